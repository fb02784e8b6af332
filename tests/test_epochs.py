"""Epoch names never repeat: not within a process, not across a fork (gunicorn's workers)."""

from __future__ import annotations

import os

from chatgenius.cursor import new_epoch, parse


def test_epochs_are_unique_within_a_process_and_parse_as_cursors():
    epochs = [new_epoch() for _ in range(5000)]
    assert len(set(epochs)) == len(epochs)
    for epoch in epochs[:: 500]:
        assert parse(f"{epoch}-1").epoch == epoch


def test_a_forked_child_proposes_epochs_the_parent_never_will():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first epochs, then exit without running pytest's teardown
        os.write(write, " ".join(new_epoch() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    parent = {new_epoch() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent
