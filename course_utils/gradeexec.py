"""nbgrader preprocessors that keep grading alive whatever a submission does.

``GuardedExecute`` replaces nbgrader's ``Execute`` in ``Autograde.autograde_preprocessors``:
it adds a per-notebook time limit (cells after the deadline are marked, not run), caps the
output a cell may produce while it runs, and survives a dying kernel: the cell that killed it
is marked, a fresh kernel replays the earlier cells, and grading goes on, so the tests that can
still run keep their points. ``CapOutput`` caps stored outputs in characters (nbgrader's
``LimitOutput`` counts lines only).
"""

from __future__ import annotations

from time import monotonic

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer

KERNEL_DIED = "KernelDied"
NOTEBOOK_TIMEOUT = "NotebookTimeout"


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def output_size(output: dict) -> int:
    """Characters an output would add to the notebook (text, data and traceback)."""
    size = len(output.get("text", "") if isinstance(output.get("text", ""), str) else "".join(output["text"]))
    for value in output.get("data", {}).values():
        size += len(value) if isinstance(value, str) else len(str(value))
    size += sum(len(line) for line in output.get("traceback", []))
    return size


class GuardedExecute(Execute):
    """nbgrader's Execute with a notebook deadline, an output cap and kernel-death recovery."""

    notebook_timeout = Integer(600, help="seconds for the whole notebook").tag(config=True)
    max_cell_output_chars = Integer(200_000, help="characters kept per cell while it runs").tag(config=True)
    max_restarts = Integer(3, help="kernel deaths survived before the rest is skipped").tag(config=True)

    def output(self, outs, msg, display_id, cell_index):  # noqa: D102 - nbclient hook
        if sum(output_size(o) for o in outs) > self.max_cell_output_chars:
            if not any(o.get("name") == "stderr" and "[output truncated" in o.get("text", "") for o in outs):
                outs.append(NotebookNode(output_type="stream", name="stderr",
                                         text=f"\n[output truncated at {self.max_cell_output_chars:,} characters]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _run(self, cell: NotebookNode, index: int, deadline: float) -> str:
        remaining = deadline - monotonic()
        if remaining < 1:
            cell.outputs = [_error(NOTEBOOK_TIMEOUT, f"not run: the notebook's time limit of {self.notebook_timeout} s was reached")]
            return "skipped"
        limit = max(1, int(min(self.timeout or remaining, remaining)))
        self.timeout_func = lambda _cell: limit
        try:
            self.execute_cell(cell, index, store_history=True)
        except DeadKernelError:
            return "died"
        except CellTimeoutError:  # the interrupt did not stop it: treat the kernel as lost
            cell.outputs.append(_error("CellTimeoutError", f"the cell ran past {limit} s and did not stop"))
            return "stuck"
        return "ok"

    def preprocess(self, nb, resources=None, km=None):  # noqa: D102 - nbconvert API
        from nbclient import NotebookClient

        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        deadline = monotonic() + self.notebook_timeout
        cells = self.nb.cells
        killers: set[int] = set()
        while True:
            died_at = None
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                order = [i for i in range(len(cells)) if i not in killers and cells[i].cell_type == "code"]
                # after a restart every cell but the killers runs again from the top (rebuilding state)
                for index in order:
                    status = self._run(cells[index], index, deadline)
                    if status in ("died", "stuck"):
                        died_at = index
                        break
            if died_at is None:
                break
            killers.add(died_at)
            if status == "stuck":
                self.log.warning("cell %s did not stop after its time limit; restarting the kernel", died_at)
            else:
                cells[died_at].outputs = [_error(KERNEL_DIED, "the kernel died while running this cell "
                                                  "(a crash, os._exit or the memory limit); it was skipped and "
                                                  "the notebook continued in a fresh kernel")]
            self.log.warning("kernel died in cell %s of %s", died_at, self.nb.metadata.get("name", "notebook"))
            if len(killers) > self.max_restarts:
                for cell in cells[died_at + 1:]:
                    if cell.cell_type == "code":
                        cell.outputs = [_error(KERNEL_DIED, "not run: the kernel died too many times")]
                break
        self.set_widgets_metadata()
        return self.nb, self.resources


class CapOutput(Preprocessor):
    """Cap each cell's stored outputs in characters, keeping the start of each output."""

    enabled = Bool(True).tag(config=True)
    max_chars = Integer(20_000, help="characters kept per cell").tag(config=True)

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        if cell.cell_type != "code":
            return cell, resources
        budget = self.max_chars
        kept = []
        for output in cell.get("outputs", []):
            size = output_size(output)
            if size <= budget:
                kept.append(output)
                budget -= size
                continue
            if output.get("output_type") == "stream":
                text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
                output["text"] = text[:max(0, budget)] + f"\n[output truncated: {size:,} characters]\n"
                kept.append(output)
            elif output.get("output_type") == "error":
                output["traceback"] = [line[:2000] for line in output.get("traceback", [])[-5:]]
                kept.append(output)
            else:
                kept.append(NotebookNode(output_type="stream", name="stderr",
                                         text=f"[an output of {size:,} characters was removed]\n"))
            budget = 0
        cell.outputs = kept
        return cell, resources
