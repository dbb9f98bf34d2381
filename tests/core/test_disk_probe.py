from core import disk_probe, hardware, history


def test_probe_measures_and_leaves_nothing_behind(tmp_path):
    speed = disk_probe.measure(tmp_path, size=8 << 20)
    assert speed.probe_bytes == 8 << 20
    assert speed.write_bytes_per_s > 1 << 20 and speed.read_bytes_per_s > 1 << 20  # any real disk beats 1 MiB/s
    assert speed.device == disk_probe.device_id(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_profile_caches_the_disk_speed_per_device(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    first = hardware.profile_machine(tmp_path, h)
    assert first.disk_write_bytes_per_s and first.disk_read_bytes_per_s
    stamp = h.disk_probe(disk_probe.device_id(tmp_path))["measured_at"]
    second = hardware.profile_machine(tmp_path, h)
    assert second.disk_write_bytes_per_s == first.disk_write_bytes_per_s  # from the cache, not measured again
    assert h.disk_probe(disk_probe.device_id(tmp_path))["measured_at"] == stamp
    hardware.profile_machine(tmp_path, h, reprobe=True)
    assert h.disk_probe(disk_probe.device_id(tmp_path))["measured_at"] > stamp
    h.close()
