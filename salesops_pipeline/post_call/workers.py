"""Who handles post-call events, and telling the living from the dead.

Every processor registers itself in the inbox (a unique owner, its host, process and run).
The leases of a processor that died (a killed run worker, a crashed `salesops post-call`)
are released at once rather than after their time runs out: on its own host by checking its
process, elsewhere by asking the orchestrator whether its run is still going.
"""

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from salesops_pipeline.post_call.inbox import Inbox, Worker


def process_started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell a reused pid from
    the original process; None where the system does not say."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def this_worker(run_id: str | None) -> Worker:
    """This process as a processor, with an owner no other processor can have."""
    host, pid = socket.gethostname(), os.getpid()
    kind = f"run:{run_id}" if run_id else "cli"
    return Worker(
        owner=f"{kind}:{host}:{pid}:{secrets.token_hex(3)}",
        run_id=run_id,
        host=host,
        pid=pid,
        process_started=process_started(pid),
    )


def process_alive(worker: Worker) -> bool:
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, under another user
    started = process_started(worker.pid)
    return worker.process_started is None or started is None or started == worker.process_started


@dataclass(frozen=True)
class DeadWorker:
    worker: Worker
    reason: str
    released: list[str]


def release_dead_workers(
    inbox: Inbox,
    *,
    run_finished: Callable[[str], bool | None] | None = None,
    on_dead_run: Callable[[str, str], None] | None = None,
) -> list[DeadWorker]:
    """Release the events held by processors that are gone.

    On this host a processor is dead when its process is. Elsewhere, a processor of a run is
    dead when `run_finished(run_id)` says its run ended (None: unknown, left alone). A dead
    processor whose run the orchestrator still thinks is going is reported through
    `on_dead_run(run_id, reason)`, so that the run is failed and retried there too.
    """
    host = socket.gethostname()
    dead = []
    for worker in inbox.workers():
        if worker.host == host:
            if process_alive(worker):
                continue
            reason = f"process {worker.pid} on {host} is gone"
            if (
                worker.run_id
                and on_dead_run is not None
                and run_finished is not None
                and run_finished(worker.run_id) is False
            ):
                on_dead_run(worker.run_id, reason)
        elif worker.run_id and run_finished is not None and run_finished(worker.run_id):
            reason = f"run {worker.run_id} has ended"
        else:
            continue
        dead.append(DeadWorker(worker, reason, inbox.release_dead_worker(worker.owner, reason)))
    return dead
