"""`project run --engine ray` on a laptop in a hospital network: the local cluster it starts
listens on the loopback interface only, Ctrl-C works as with the process engine (the first
lets the cases in flight finish and be stored, the second stops at once), and no Ray process
outlives the run.

The interrupts are delivered in-process, as in test_cancel_inflight.py: a terminal's Ctrl-C
reaches the driver only, since Ray starts its processes with SIGINT blocked and its workers in
process groups of their own.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from her2viewer.cli.main import main
from her2viewer.project.cohort import import_csv
from her2viewer.project.engines import _check_loopback, run_ray
from her2viewer.project.store import Project, ProjectError
from her2viewer.project.tasks import FAULT_ENV, Task
from tests.reliability.conftest import leftovers

RAN = {"case000", "case001"}
#: Long enough for Ray processes to exit after a run; waited on as a condition.
EXIT_WAIT_S = 120


def _project(folder, labels) -> Project:
    project = Project.create(folder)
    import_csv(project, labels)
    return project


def _run(folder) -> int:
    command = ["project", "run", str(folder), "--analyses", "segment", "--workers", "1"]
    return main([*command, "--engine", "ray", "--quiet"])


def _bound(pids: set[int]) -> set[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of each TCP socket listening or UDP socket bound."""
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        listens = conn.status == psutil.CONN_LISTEN
        if conn.pid in pids and (listens or (conn.type == socket.SOCK_DGRAM and not conn.raddr)):
            found.add((conn.pid, psutil.Process(conn.pid).name(), *conn.laddr))
    return found


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback  # ::ffff:127.0.0.1


def _started_since(before: set[int]) -> list[psutil.Process]:
    """This process's descendants that were not there ``before`` (the Ray cluster's)."""
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in before]


def _none_survives(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=EXIT_WAIT_S)
    assert not alive, [(p.pid, p.name()) for p in alive]


@pytest.mark.slow  # a local Ray cluster
def test_a_local_cluster_listens_on_loopback_and_a_first_ctrl_c_stores_the_cases_in_flight(
    tmp_path, synthetic_cohort, monkeypatch, capfd
):
    project = _project(tmp_path / "proj", synthetic_cohort)
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    own_sockets = _bound({os.getpid()})
    seen: dict = {}
    record = Project.record

    def record_then_interrupt(self, row):
        record(self, row)
        if not seen:  # the cluster is up and has run a case: what listens, then Ctrl-C
            seen["ray"] = _started_since(children)
            pids = {p.pid for p in seen["ray"]} | {os.getpid()}
            seen["sockets"] = _bound(pids) - own_sockets
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Project, "record", record_then_interrupt)
    assert _run(project.folder) == 130
    assert seen["sockets"], "no socket of Ray's found"  # gcs_server, raylet, workers, driver
    assert [s for s in seen["sockets"] if not _loopback(s[2])] == []
    captured = capfd.readouterr()
    assert "stopping: no new case starts" in captured.err
    assert captured.out.strip() == (
        "cancelled: 2 tasks done, 0 failed, 2 not run (the next 'project run' does them)"
    )
    assert {r.case_id for r in project.results()} == RAN
    _none_survives(seen["ray"])


def _interrupt_when_hung(marker: Path, seen: dict, children: set[int]) -> None:
    """Once the first Ctrl-C has been taken and the hung case runs, note the Ray processes
    and send the second Ctrl-C (conditions, polled; no fixed sleep decides anything)."""
    pause = threading.Event()
    while not (signal.getsignal(signal.SIGINT) is signal.default_int_handler and marker.exists()):
        pause.wait(0.05)
    while not marker.read_text().isdigit():  # the worker is writing its pid
        pause.wait(0.05)
    seen["worker"] = psutil.Process(int(marker.read_text()))
    seen["ray"] = _started_since(children)
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow  # a local Ray cluster
def test_a_second_ctrl_c_ends_a_case_in_flight_and_leaves_no_ray_process(
    tmp_path, synthetic_cohort, monkeypatch, capfd
):
    marker = tmp_path / "hung"
    monkeypatch.setenv(FAULT_ENV, f"hang:case001:segment:{marker}")
    project = _project(tmp_path / "proj", synthetic_cohort)
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    seen: dict = {}
    record = Project.record

    def record_then_interrupt(self, row):
        record(self, row)
        os.kill(os.getpid(), signal.SIGINT)  # the first, as case000 is stored
        seen["second"] = threading.Thread(
            target=_interrupt_when_hung, args=(marker, seen, children), daemon=True
        )
        seen["second"].start()

    monkeypatch.setattr(Project, "record", record_then_interrupt)
    handler = signal.getsignal(signal.SIGINT)
    assert _run(project.folder) == 130
    seen["second"].join()
    assert capfd.readouterr().err.strip().endswith("her2viewer: cancelled")
    assert signal.getsignal(signal.SIGINT) is handler
    assert seen["worker"] in seen["ray"]  # the hung case ran on a worker of the run's cluster
    _none_survives(seen["ray"])
    assert {r.case_id for r in project.results()} == {"case000"}
    assert leftovers(project.folder) == []


class _Handle:
    """A fake Ray task, actor or remote function: every call gives a new handle."""

    def options(self, **kwargs) -> _Handle:
        return self

    def remote(self, *args) -> _Handle:
        return _Handle()

    @property
    def run(self) -> _Handle:
        return self


class _JoinedRay:
    """Just enough of Ray for run_ray: a cluster someone else started, tasks never finish,
    and a second Ctrl-C comes during ``ray.wait``."""

    class exceptions:
        RayError = Exception

    def __init__(self) -> None:
        self.calls: list = []

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict:
        return {"CPU": 1, "GPU": 1}

    def remote(self, function) -> _Handle:
        return _Handle()

    def wait(self, refs, num_returns):
        self.calls.append(("wait", len(refs)))
        raise KeyboardInterrupt

    def cancel(self, ref, *, force: bool) -> None:
        self.calls.append(("cancel", force))

    def kill(self, actor) -> None:
        self.calls.append(("kill",))

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


def _case(case_id: str) -> list[Task]:
    return [
        Task("proj", case_id, analysis, "slide.svs", None, None, "key")
        for analysis in ("segment", "clam")
    ]


def test_a_second_ctrl_c_on_a_joined_cluster_cancels_its_tasks_and_kills_its_actors(
    monkeypatch,
):
    ray = _JoinedRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    with pytest.raises(KeyboardInterrupt):
        run_ray([_case("c0"), _case("c1")], lambda outcomes: None, 1, "auto", 0, actors=1)
    # two segment tasks and one actor's clam case in flight: the tasks cancelled (their
    # workers exit), the actor killed, and the cluster, not ours, left running
    assert ray.calls == [("wait", 3), ("cancel", True), ("cancel", True), ("kill",)]


def test_ray_address_joins_that_cluster_rather_than_starting_a_local_one(monkeypatch):
    class Unreachable(_JoinedRay):
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs) -> None:
            self.calls.append(("init", kwargs["address"], kwargs["num_cpus"]))
            raise ConnectionError("no Ray cluster answers there")

    ray = Unreachable()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    with pytest.raises(ProjectError) as error:
        run_ray([_case("c0")], lambda outcomes: None, 1, None, 0)
    assert str(error.value) == (
        "Cannot join the Ray cluster at head:6379: no Ray cluster answers there"
    )
    assert ray.calls == [("init", "head:6379", None), ("shutdown",)]


def test_a_local_cluster_that_ray_put_on_the_network_is_refused():
    ray = SimpleNamespace(
        __version__="9.0", util=SimpleNamespace(get_node_ip_address=lambda: "192.0.2.2")
    )
    with pytest.raises(ProjectError, match=r"^Ray 9\.0 put its local cluster on 192\.0\.2\.2, not"):
        _check_loopback(ray)
    ray.util.get_node_ip_address = lambda: "::1"
    _check_loopback(ray)  # on loopback: nothing to say
