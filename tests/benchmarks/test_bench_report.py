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


def test_each_device_is_stated_as_the_share_of_its_stage_it_saves():
    from bench.devices import summary

    generate = {"prompts": 8, "seconds": 2.0, "merged_s": 10.0, "merged_stock_kernels_s": 12.5}
    cache = {"prompts": 8, "seconds": 15.0, "growing_s": [130.0, 150.0], "presized_s": [110.0, 114.0]}
    alloc = {
        "train_step_saved": 0.2,
        "encode_batch_saved": -0.05,
        "encode_single_saved": 0.0,
        "peak_rss_saved": 0.1,
        "runs": {},
    }
    dev = summary(generate, cache, alloc)
    assert dev["prepacked_kernels"]["time_saved"] == 0.2  # 12.5 s -> 10 s
    assert dev["presized_kv_cache"]["time_saved"] == 0.2 and "15 s" in dev["presized_kv_cache"]["stage"]
    assert dev["mimalloc"]["encode_time_saved"] == -0.05  # a device that costs shows as negative
    assert summary(None, None, {"runs": {}, "note": "mimalloc is not installed here"}) == {}
    # felt: some stage's time or memory at least 5% less; a device that saves 1-4% everywhere is not
    weak = summary({**generate, "merged_s": 12.0}, None, {**alloc, "train_step_saved": 0.01, "peak_rss_saved": 0.04})
    assert weak["prepacked_kernels"]["felt"] is False and weak["mimalloc"]["felt"] is False
    assert dev["prepacked_kernels"]["felt"] and dev["mimalloc"]["felt"]
