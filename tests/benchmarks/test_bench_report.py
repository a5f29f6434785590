"""bench.run's report: results.md is written from a result whose machine is the real provenance
record (a renamed field once crashed `make bench` after all its measurements)."""

from bench.run import machine, markdown


def test_markdown_reads_the_real_machine_record():
    m = {**machine(), "load_average_end": [1.0, 1.0, 1.0], "bench_wall_s": 600.0}
    rows = [
        {"name": "train_mfu", "value": 0.687, "unit": "ratio", "target": 0.6, "better": "higher", "met": True},
        {"name": "train_peak_rss_gb", "value": 6.19, "unit": "GB", "target": 6.0, "better": "lower", "met": False},
        {
            "name": "cache_skip",
            "value": None,
            "unit": "x",
            "target": "segment and encode skipped",
            "better": "higher",
            "met": None,
        },
    ]
    text = markdown({"machine": m, "benchmarks": rows})
    assert f"torch {m['packages']['torch']}" in text and f"({m['cpu_capability']} in force)" in text
    assert "| train_mfu | 0.687 | ratio | >= 0.6 | yes |" in text
    assert "| train_peak_rss_gb | 6.19 | GB | <= 6 | **no** |" in text
    assert "| cache_skip | n/a | x | segment and encode skipped | - |" in text
