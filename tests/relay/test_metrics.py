"""A relay's frame counts reach the metrics as the client library's own calls would have put
them there, one by one."""

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from app.relay.metrics import LATENESS_BUCKETS, FrameCounts

# Bounds themselves, between them, past the last, and early (a timer may fire a little early).
LATENESS = [0.0005, 0.0001, 0.0042, 0.02, 0.021, 0.5, 0.7, 3.0, -0.0002, 0.001, 0.0042]


def samples(registry: CollectorRegistry, name: str, provider: str) -> dict[str, float]:
    return {
        sample.name + sample.labels.get("le", ""): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith(name) and sample.labels.get("provider") == provider
        if not sample.name.endswith("_created")
    }


def frames(provider: str, direction: str) -> float:
    labels = {"provider": provider, "direction": direction}
    return REGISTRY.get_sample_value("bridge_relay_frames_total", labels) or 0.0


def test_published_lateness_is_the_histogram_that_observing_each_frame_makes() -> None:
    expected = CollectorRegistry()
    reference = Histogram(
        "bridge_relay_frame_lateness_seconds",
        "reference",
        ["provider"],
        buckets=LATENESS_BUCKETS,
        registry=expected,
    ).labels("metrics-test")
    counts = FrameCounts("metrics-test")
    for seconds in LATENESS:
        reference.observe(seconds)
        counts.observe_lateness(seconds)
    counts.publish(to_platform=0)
    name = "bridge_relay_frame_lateness_seconds"
    published = samples(REGISTRY, name, "metrics-test")
    assert published == samples(expected, name, "metrics-test")
    assert published[f"{name}_count"] == len(LATENESS)
    counts.publish(to_platform=0)  # nothing new: nothing added
    assert samples(REGISTRY, name, "metrics-test") == published


def test_frames_are_published_once_each() -> None:
    counts = FrameCounts("frames-test")
    counts.to_ultravox += 3
    counts.publish(to_platform=2)
    assert frames("frames-test", "to_ultravox") == 3
    assert frames("frames-test", "to_platform") == 2
    counts.to_ultravox += 1
    counts.publish(to_platform=2)  # the player's total: no agent audio since
    counts.publish(to_platform=5)
    assert frames("frames-test", "to_ultravox") == 4
    assert frames("frames-test", "to_platform") == 5
