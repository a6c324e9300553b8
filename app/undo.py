"""The one adapter between core edits and Qt's undo stack.

Every user-visible change goes through :class:`UndoController.push`, which wraps a core edit
(``apply``/``revert``/``label``/``merge_key``/``merge``) in an :class:`EditCommand` and pushes it: the push
*is* the change. A failing edit never reaches the stack and leaves the project untouched (the edit's
contract); its error is re-raised to the caller, which shows it. Main thread only.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QUndoCommand, QUndoStack


class EditCommand(QUndoCommand):
    """A ``QUndoCommand`` that applies/reverts one core edit on one project."""

    def __init__(self, project: Any, edit: Any, mergeable: bool = True) -> None:
        super().__init__(str(getattr(edit, "label", type(edit).__name__)))
        self._project, self._edit = project, edit
        self._mergeable = mergeable
        self.error: BaseException | None = None

    @property
    def edit(self) -> Any:
        return self._edit

    def redo(self) -> None:
        try:
            self._edit.apply(self._project)
        except Exception as exc:  # the edit left the project untouched; keep it off the stack
            self.error = exc
            # QUndoStack.push deletes an obsolete command instead of adding it (Qt >= 5.9).
            self.setObsolete(True)

    def undo(self) -> None:
        self._edit.revert(self._project)

    def id(self) -> int:
        if not self._mergeable:
            return -1
        key = getattr(self._edit, "merge_key", -1)
        return int(key) if key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, EditCommand) or other.error is not None:
            return False
        merge = getattr(self._edit, "merge", None)
        return bool(merge(other._edit)) if merge is not None else False


class UndoController:
    """Owns the ``QUndoStack`` of one open project and pushes edits onto it."""

    def __init__(self, project: Any, stack: QUndoStack | None = None) -> None:
        self.project = project
        self.stack = stack if stack is not None else QUndoStack()

    def push(self, edit: Any, merge: bool = False) -> None:
        """Apply ``edit`` as one undoable step.

        ``merge=True`` lets it fold into the previous step when both are the same kind of edit on the same
        thing (a level slider being dragged). Gestures that push once on release leave it False, so two
        separate drags of one clip stay two undo steps.

        Raises:
            Exception: whatever the edit raised; the project is unchanged and nothing was pushed.
        """
        command = EditCommand(self.project, edit, mergeable=merge)
        self.stack.push(command)
        if command.error is not None:
            raise command.error
