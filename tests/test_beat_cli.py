"""``rabbitq beat`` refuses bad schedules before touching the broker, and --dry-run shows
what would fire."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rabbitq.cli.main import cli


def beat(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["beat", "-A", "tests.beat_app", *args])
    return result.exit_code, result.output


def test_dry_run_prints_the_next_fire_times_in_the_entry_time_zone() -> None:
    code, output = beat("--dry-run", "--count", "2")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith(
        "morning: tests.beat_app.report.s('eu')  [cron 0 7 * * * Europe/Paris"
    )
    assert len(lines) == 3
    assert all(" 07:00:00 CE" in line for line in lines[1:])  # CET or CEST, local time


def test_dry_run_includes_schedule_file_entries(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("entries:\n  ping:\n    task: shop.ping\n    every: 90s\n")
    code, output = beat("--schedule", str(schedule), "--dry-run", "--count", "1")
    assert code == 0, output
    assert "ping: shop.ping.s()  [every 1m30s; catch_up once, grace 1m]" in output


def test_invalid_schedule_file_is_refused_with_its_line(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("entries:\n  nightly:\n    task: t\n    cron: '0 25 * * *'\n")
    code, output = beat("--schedule", str(schedule))
    assert code == 1
    assert f"Error: {schedule}:4: entry 'nightly': invalid cron expression" in output


def test_a_file_entry_named_like_a_code_entry_is_refused(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("entries:\n  morning:\n    task: t\n    every: 1\n")
    code, output = beat("--schedule", str(schedule), "--dry-run")
    assert code == 1
    assert f"{schedule}:2: entry 'morning' is also defined in code" in output


def test_beat_without_an_app_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["beat"])
    assert result.exit_code == 2 and "rabbitq beat -A" in result.output


def test_an_app_without_entries_has_nothing_to_schedule() -> None:
    result = CliRunner().invoke(cli, ["beat", "-A", "tests.sample_app", "--dry-run"])
    assert result.exit_code == 1 and "nothing to schedule" in result.output
