"""Node names as Celery forms them (``-n``)."""

from __future__ import annotations

import pytest

from rabbitq.errors import ConfigurationError
from rabbitq.nodename import DEFAULT_NODENAME, format_nodename


def test_the_default_is_rabbitq_at_the_host() -> None:
    assert format_nodename(DEFAULT_NODENAME, host="box.example.com") == "rabbitq@box.example.com"


def test_celerys_keys_expand() -> None:
    name = format_nodename("w%i.%n@%d", 3, processes=4, host="box.example.com")
    assert name == "w3.box@example.com"


def test_percent_capital_i_is_empty_for_a_single_process_and_dashed_otherwise() -> None:
    assert format_nodename("w%I@%h", host="h") == "w@h"
    assert format_nodename("w%I@%h", 2, processes=2, host="h") == "w-2@h"


def test_each_of_several_processes_gets_its_index_when_the_template_has_none() -> None:
    names = [format_nodename(DEFAULT_NODENAME, i, processes=3, host="h") for i in (1, 2, 3)]
    assert names == ["rabbitq-1@h", "rabbitq-2@h", "rabbitq-3@h"]


def test_a_name_without_at_is_the_host_as_in_celery() -> None:
    assert format_nodename("web1") == "rabbitq@web1"


def test_a_literal_percent() -> None:
    assert format_nodename("a%%b@h") == "a%b@h"


def test_an_unknown_key_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown key %x .*%h %n %d %i %I"):
        format_nodename("w%x@h")


def test_an_empty_name_or_white_space_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        format_nodename("  ")
    with pytest.raises(ConfigurationError, match="white space"):
        format_nodename("a b@h")
