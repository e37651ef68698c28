"""`rabbitq purge QUEUE...` against a real broker."""

from __future__ import annotations

import pytest

from integration.cli_support import fill_queue, run_cli, run_cli_in_terminal
from integration.support import queue_depth, wait_for
from rabbitq.amqp.connection_parameters import open_blocking

# The purge command line, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only


def test_purge_empties_each_named_queue_and_says_how_many_it_removed(
    broker_url: str, unique_name: str
) -> None:
    first, second = f"{unique_name}.a", f"{unique_name}.b"
    fill_queue(broker_url, first, 3)
    fill_queue(broker_url, second, 2)
    result = run_cli("purge", first, second, "--yes", "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"purged 3 message(s) from {first}",
        f"purged 2 message(s) from {second}",
    ]
    assert queue_depth(broker_url, first) == queue_depth(broker_url, second) == 0


def test_purge_leaves_queues_it_was_not_given_alone(broker_url: str, unique_name: str) -> None:
    named, other = unique_name, f"{unique_name}.other"
    fill_queue(broker_url, named, 1)
    fill_queue(broker_url, other, 4)
    assert run_cli("purge", named, "--yes", "--broker", broker_url).returncode == 0
    assert queue_depth(broker_url, other) == 4


def test_a_missing_queue_is_an_error_and_nothing_is_purged(
    broker_url: str, unique_name: str
) -> None:
    fill_queue(broker_url, unique_name, 2)
    missing = f"{unique_name}.typo"
    result = run_cli("purge", unique_name, missing, "--yes", "--broker", broker_url)
    assert result.returncode == 1
    assert f"no queue named '{missing}'" in result.stderr
    assert "nothing was purged" in result.stderr
    assert queue_depth(broker_url, unique_name) == 2
    assert "0 message" not in result.stdout


def test_without_a_terminal_and_without_yes_purge_refuses(
    broker_url: str, unique_name: str
) -> None:
    fill_queue(broker_url, unique_name, 2)
    result = run_cli("purge", unique_name, "--broker", broker_url)
    assert result.returncode == 1
    assert "no terminal to confirm on; pass --yes" in result.stderr
    assert queue_depth(broker_url, unique_name) == 2


def test_in_a_terminal_purge_asks_first_and_purges_on_yes(
    broker_url: str, unique_name: str
) -> None:
    fill_queue(broker_url, unique_name, 2)
    code, shown = run_cli_in_terminal("purge", unique_name, "--broker", broker_url, answer="y")
    assert code == 0, shown
    assert f"delete the waiting messages of {unique_name} (2)?" in shown
    assert f"purged 2 message(s) from {unique_name}" in shown
    assert queue_depth(broker_url, unique_name) == 0


def test_in_a_terminal_answering_no_purges_nothing(broker_url: str, unique_name: str) -> None:
    fill_queue(broker_url, unique_name, 2)
    code, shown = run_cli_in_terminal("purge", unique_name, "--broker", broker_url, answer="n")
    assert code == 1, shown
    assert "Aborted" in shown
    assert queue_depth(broker_url, unique_name) == 2


def test_force_is_accepted_for_yes_as_in_celery(broker_url: str, unique_name: str) -> None:
    for flag in ("-f", "--force"):
        fill_queue(broker_url, unique_name, 1)
        result = run_cli("purge", unique_name, flag, "--broker", broker_url)
        assert result.returncode == 0, result.stderr
    assert queue_depth(broker_url, unique_name) == 0


def test_rabbitqs_own_queues_and_dead_letter_queues_are_refused(
    broker_url: str, unique_name: str
) -> None:
    fill_queue(broker_url, unique_name, 1)
    own = run_cli("purge", unique_name, "rabbitq.chords", "--yes", "--broker", broker_url)
    assert own.returncode == 1
    assert "'rabbitq.chords' is one of rabbitq's own queues" in own.stderr
    dead = run_cli("purge", f"{unique_name}.dead", "--yes", "--broker", broker_url)
    assert dead.returncode == 1
    assert f"use `rabbitq dead purge {unique_name}.dead`" in dead.stderr
    assert queue_depth(broker_url, unique_name) == 1  # refused before anything was purged


def test_messages_a_consumer_holds_unacked_are_not_purged(
    broker_url: str, unique_name: str
) -> None:
    fill_queue(broker_url, unique_name, 3)
    connection = open_blocking(broker_url)
    try:
        channel = connection.channel()
        method, _, _ = channel.basic_get(unique_name, auto_ack=False)  # held, as a worker does
        assert method is not None
        result = run_cli("purge", unique_name, "--yes", "--broker", broker_url)
        assert f"purged 2 message(s) from {unique_name}" in result.stdout
    finally:
        connection.close()  # the held message goes back to the queue
    wait_for(lambda: queue_depth(broker_url, unique_name) == 1, 10)
