"""Bin (model adapter, filter, search, reference roles), inspector (recipe), models dialog, start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt

from core import edits
from core.generation import GenerationRecipe, Task
from core.project import Clip, ReferenceRole, new_id
from tests.app.conftest import wait_idle

ROOT = Path(__file__).resolve().parents[2]


def _import(qtbot, win, *paths: Path) -> list[str]:
    with qtbot.waitSignal(win.doc.editing.import_finished, timeout=15000) as blocker:
        win.doc.editing.import_files([str(p) for p in paths])
    wait_idle(qtbot, win)
    return blocker.args[0]


def test_asset_model_passes_the_model_tester_through_imports_and_removals(
    qtbot, qtmodeltester, window, media_dir
):
    model = window.doc.bin.model
    qtmodeltester.check(model)
    ids = _import(qtbot, window, media_dir / "tone.wav", media_dir / "still.png", media_dir / "silent.mp4")
    qtmodeltester.check(model)
    assert [model.index(r).data(Qt.ItemDataRole.UserRole + 1) for r in range(model.rowCount())] == ids
    window.doc.editing.remove_assets([ids[1]])
    assert model.rowCount() == 2
    window.doc.stack.undo()
    assert model.index(1).data(Qt.ItemDataRole.UserRole + 1) == ids[1]  # back in its place
    qtmodeltester.check(model)


def test_bin_filter_search_and_reference_roles(qtbot, window, media_dir):
    wav, png, _mp4 = _import(
        qtbot, window, media_dir / "tone.wav", media_dir / "still.png", media_dir / "silent.mp4"
    )
    bin_panel = window.doc.bin
    proxy = bin_panel.proxy
    assert proxy.rowCount() == 3
    bin_panel.kind.setCurrentIndex(bin_panel.kind.findData("audio"))
    assert proxy.rowCount() == 1
    bin_panel.kind.setCurrentIndex(bin_panel.kind.findData("all"))
    qtbot.keyClicks(bin_panel.search, "still")
    assert proxy.rowCount() == 1
    bin_panel.search.clear()
    # Tag the image as a character reference: it shows under "References" and in its label.
    window.doc.editing.set_asset_role(png, ReferenceRole.CHARACTER)
    bin_panel.kind.setCurrentIndex(bin_panel.kind.findData("references"))
    assert proxy.rowCount() == 1
    assert "character" in proxy.index(0, 0).data()
    # Only images can be references: the edit refuses and nothing changes.
    try:
        window.doc.editing.set_asset_role(wav, ReferenceRole.STYLE)
    except edits.EditError as exc:
        assert "image" in str(exc)
    else:
        raise AssertionError("an audio file became a reference")
    assert window.doc.project.asset(wav).role is None
    # The inspector edits the role through the undo stack.
    bin_panel.kind.setCurrentIndex(bin_panel.kind.findData("all"))
    bin_panel.select_asset(png)
    inspector = window.doc.inspector
    assert inspector.role is not None
    inspector.role.setCurrentIndex(inspector.role.findData(ReferenceRole.STYLE.value))
    assert window.doc.project.asset(png).role is ReferenceRole.STYLE
    window.doc.stack.undo()
    assert window.doc.project.asset(png).role is ReferenceRole.CHARACTER
    wait_idle(qtbot, window)


def test_generated_clip_shows_badge_and_recipe(qtbot, window, media_dir):
    (mp4, png) = _import(qtbot, window, media_dir / "silent.mp4", media_dir / "still.png")
    recipe = GenerationRecipe(
        task=Task.REFERENCE_TO_VIDEO, prompt="A red kite over the dunes", reference_asset_ids=(png,), seed=7
    )
    v1 = next(t for t in window.doc.project.tracks if t.name == "V1")
    clip = Clip(new_id(), mp4, v1.track_id, 0, 0, 24, recipe=recipe)
    window.doc.undo.push(edits.AddClip(clip))
    timeline = window.doc.timeline
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=timeline.clip_rect(clip).center().toPoint())
    inspector = window.doc.inspector
    from PySide6.QtWidgets import QLabel, QPlainTextEdit

    texts = [label.text() for label in inspector.findChildren(QLabel)]
    assert any("recipe" in t for t in texts)
    assert "reference to video" in texts
    assert "still.png" in " ".join(texts)
    assert "7" in texts
    prompts = [e.toPlainText() for e in inspector.findChildren(QPlainTextEdit)]
    assert prompts == ["A red kite over the dunes"]
    # The badge is painted on the clip: a purple-ish pixel in its title bar.
    image = timeline.grab().toImage()
    rect = timeline.clip_rect(clip)
    colour = image.pixelColor(int(rect.left()) + 12, int(rect.top()) + 5)
    assert colour.red() > 150 and colour.blue() > 200
    wait_idle(qtbot, window)


def test_models_menu_explains_how_to_get_weights(qtbot, window):
    from app.models_dialog import ModelsDialog

    window.act_models.trigger()
    dialog = next(d for d in window.findChildren(ModelsDialog))
    assert "python main.py models download" in dialog.text.toPlainText()
    qtbot.waitUntil(lambda: dialog._rows is not None or "Could not" in dialog.status.text(), timeout=15000)
    if dialog._rows is not None:
        assert {row[0] for row in dialog._rows} == {t.value for t in Task}
    dialog.close()
    wait_idle(qtbot, window)


def test_the_window_paints_without_importing_torch(tmp_path):
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--exit-after-paint"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("first-paint"))
    assert line.endswith("heavy-modules=none")
