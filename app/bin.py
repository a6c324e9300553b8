"""The bin: the project's assets with pictures, durations and reference roles; import, filter, relink.

Owns :class:`QtAssetListModel` (a live adapter over ``project.assets``: core events become row inserts,
removes and ``dataChanged``; it keeps no copy), :class:`AssetFilterModel` (kind and text filter) and
:class:`BinPanel` (the widget: list, search box, kind filter, import/relink buttons, context menu).

Dragging assets out produces :data:`app.timeline.ASSET_MIME`; dropping files from the file manager
imports them. Main thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QIcon, QImage, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.timecode import format_duration
from app.timeline import ASSET_MIME
from core.project import Asset, AssetKind, Project, ReferenceRole

ASSET_ID_ROLE = Qt.ItemDataRole.UserRole + 1
KIND_ROLE = Qt.ItemDataRole.UserRole + 2
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 3
ROLE_COLOURS = {
    ReferenceRole.CHARACTER: "#e0707a",
    ReferenceRole.OBJECT: "#e8b53a",
    ReferenceRole.BACKGROUND: "#5fb0e0",
    ReferenceRole.STYLE: "#b98cff",
}
ICON_SIZE = QSize(128, 72)


class QtAssetListModel(QAbstractListModel):
    """Rows are the project's assets in bin order; a live adapter (no copy of the list)."""

    def __init__(self, project: Project, media: Any = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._project = project
        self._media = media
        self._ids: list[str] = [a.asset_id for a in project.assets]  # row -> id index only
        self._subscriptions = [
            (project.asset_added, self._on_project_asset_added),
            (project.asset_removed, self._on_project_asset_removed),
            (project.asset_changed, self._on_project_asset_changed),
            (project.settings_changed, self._on_project_settings_changed),
        ]
        for signal, slot in self._subscriptions:
            signal.connect(slot)
        self._icons: dict[str, QIcon] = {}
        if media is not None:
            media.poster_ready.connect(self._on_media_poster_ready)

    def detach(self) -> None:
        for signal, slot in self._subscriptions:
            if signal.is_connected(slot):
                signal.disconnect(slot)
        self._subscriptions = []

    # core events -> Qt model notifications
    def _on_project_asset_added(self, asset: Asset) -> None:
        row = self._project.asset_index(asset.asset_id)
        self.beginInsertRows(QModelIndex(), row, row)
        self._ids.insert(row, asset.asset_id)
        self.endInsertRows()

    def _on_project_asset_removed(self, asset: Asset, index: int) -> None:
        self.beginRemoveRows(QModelIndex(), index, index)
        del self._ids[index]
        self.endRemoveRows()
        self._icons.pop(asset.asset_id, None)

    def _on_project_asset_changed(self, asset: Asset, old: dict[str, Any]) -> None:
        if "path" in old or "missing" in old:
            self._icons.pop(asset.asset_id, None)
            if self._media is not None:
                self._media.forget(asset.asset_id)
        row = self._ids.index(asset.asset_id)
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def _on_project_settings_changed(self, settings: Any, old: dict[str, Any]) -> None:
        if self._ids:
            self.dataChanged.emit(self.index(0), self.index(len(self._ids) - 1))

    def _on_media_poster_ready(self, asset_id: str) -> None:
        if asset_id in self._ids:
            self._icons.pop(asset_id, None)
            index = self.index(self._ids.index(asset_id))
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    # Qt model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def asset_at(self, row: int) -> Asset:
        return self._project.asset(self._ids[row])

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._ids):
            return None
        asset = self._project.asset(self._ids[index.row()])
        fps = self._project.settings.fps
        if role == Qt.ItemDataRole.DisplayRole:
            lines = [asset.name or asset.path]
            detail = format_duration(asset.duration_frames, fps)
            if asset.role is not None:
                detail += f" · {asset.role.value}"
            if asset.missing:
                detail = "offline · relink"
            lines.append(detail)
            return "\n".join(lines)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icon(asset)
        if role == Qt.ItemDataRole.ToolTipRole:
            size = f"{asset.width}×{asset.height}" if asset.width else ""
            extra = " · with sound" if asset.has_audio and asset.kind is AssetKind.VIDEO else ""
            status = "\nFile not found: use Relink to point at it." if asset.missing else ""
            return f"{asset.path}\n{asset.kind.value} {size}{extra}{status}"
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor("#ff8a8a") if asset.missing else None
        if role == ASSET_ID_ROLE:
            return asset.asset_id
        if role == KIND_ROLE:
            return asset.kind.value
        if role == SEARCH_ROLE:
            return f"{asset.name} {asset.path} {asset.kind.value} {asset.role.value if asset.role else ''}".lower()
        return None

    def _icon(self, asset: Asset) -> QIcon:
        cached = self._icons.get(asset.asset_id)
        if cached is not None:
            return cached
        pix = QPixmap(ICON_SIZE)
        pix.fill(QColor("#15171b"))
        painter = QPainter(pix)
        image: QImage | None = None
        if self._media is not None and not asset.missing:
            image = self._media.poster(asset)
        if image is not None and not image.isNull():
            scaled = image.scaled(
                ICON_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            painter.drawImage(
                (ICON_SIZE.width() - scaled.width()) // 2, (ICON_SIZE.height() - scaled.height()) // 2, scaled
            )
        else:
            name = {"video": "video", "image": "image", "audio": "audio"}[asset.kind.value]
            theme.icon("warning" if asset.missing else name).paint(
                painter, pix.rect().adjusted(44, 16, -44, -16)
            )
        if asset.role is not None:
            painter.fillRect(0, ICON_SIZE.height() - 14, 74, 14, QColor(ROLE_COLOURS[asset.role]))
            painter.setPen(QColor("#15171b"))
            painter.drawText(4, ICON_SIZE.height() - 3, asset.role.value.upper())
        if asset.missing:
            painter.fillRect(pix.rect(), QColor(168, 63, 63, 90))
        painter.end()
        icon = QIcon(pix)
        if image is not None or asset.missing or self._media is None:
            self._icons[asset.asset_id] = icon
        return icon

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid():
            return base | Qt.ItemFlag.ItemIsDragEnabled
        return base | Qt.ItemFlag.ItemIsDropEnabled

    def mimeTypes(self) -> list[str]:
        return [ASSET_MIME, "text/uri-list"]

    def mimeData(self, indexes: Any) -> QMimeData:
        mime = QMimeData()
        ids = [self._ids[i.row()] for i in indexes if i.isValid()]
        mime.setData(ASSET_MIME, " ".join(dict.fromkeys(ids)).encode())
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction


class AssetFilterModel(QSortFilterProxyModel):
    """Filters the bin by kind ("all", "video", "image", "audio", "references") and search text."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._kind = "all"
        self._text = ""

    def set_kind(self, kind: str) -> None:
        self._kind = kind
        self.invalidate()

    def set_text(self, text: str) -> None:
        self._text = text.strip().lower()
        self.invalidate()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        index = self.sourceModel().index(row, 0, parent)
        kind = index.data(KIND_ROLE)
        search = index.data(SEARCH_ROLE) or ""
        if self._kind == "references":
            if (
                " character" not in search
                and " object" not in search
                and " background" not in search
                and " style" not in search
            ):
                return False
        elif self._kind != "all" and kind != self._kind:
            return False
        return all(word in search for word in self._text.split())


class _BinListView(QListView):
    """Icon list that imports files dropped from the file manager."""

    files_dropped = Signal(list)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: Any) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            event.acceptProposedAction()
            if paths:
                self.files_dropped.emit(paths)
            return
        super().dropEvent(event)


class BinPanel(QWidget):
    """The media bin widget.

    Signals:
        asset_selected(str): the current asset changed ("" when none).
        import_requested(): the user asked for File ▸ Import (button).
        relink_requested(str): relink this asset.
        add_to_timeline_requested(str): put this asset at the playhead.
    """

    asset_selected = Signal(str)
    import_requested = Signal()
    relink_requested = Signal(str)
    add_to_timeline_requested = Signal(str)

    def __init__(
        self, project: Project, editing: Any, media: Any = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.project = project
        self.editing = editing
        self.model = QtAssetListModel(project, media, self)
        self.proxy = AssetFilterModel(self)
        self.proxy.setSourceModel(self.model)
        title = QLabel("Media")
        title.setObjectName("panelTitle")
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search media…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_text)
        self.kind = QComboBox(self)
        for label, key in (
            ("All", "all"),
            ("Video", "video"),
            ("Images", "image"),
            ("Audio", "audio"),
            ("References", "references"),
        ):
            self.kind.addItem(label, key)
        self.kind.currentIndexChanged.connect(lambda _i: self.proxy.set_kind(self.kind.currentData()))
        import_button = QToolButton(self)
        import_button.setIcon(theme.icon("import"))
        import_button.setToolTip("Import media… (Ctrl+I)")
        import_button.clicked.connect(self.import_requested)
        self.relink_button = QToolButton(self)
        self.relink_button.setIcon(theme.icon("relink"))
        self.relink_button.setToolTip("Relink the selected offline media…")
        self.relink_button.clicked.connect(self._relink_current)
        top = QHBoxLayout()
        top.setContentsMargins(4, 4, 4, 2)
        top.addWidget(self.search, 1)
        top.addWidget(self.kind)
        top.addWidget(import_button)
        top.addWidget(self.relink_button)
        self.view = _BinListView(self)
        self.view.setModel(self.proxy)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(ICON_SIZE)
        self.view.setGridSize(QSize(ICON_SIZE.width() + 16, ICON_SIZE.height() + 44))
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setWordWrap(True)
        self.view.setUniformItemSizes(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setDragEnabled(True)
        self.view.setAcceptDrops(True)
        self.view.setDropIndicatorShown(False)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.view.setDefaultDropAction(Qt.DropAction.CopyAction)
        # IconMode resets the viewport's drop flag; drops land on the viewport, so set it last.
        self.view.viewport().setAcceptDrops(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_menu)
        self.view.files_dropped.connect(self._on_view_files_dropped)
        self.view.doubleClicked.connect(self._on_view_double_clicked)
        self.view.selectionModel().currentChanged.connect(self._on_view_current_changed)
        self.empty_hint = QLabel("Drop video, image or audio files here\nor use File ▸ Import", self)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setObjectName("viewerMessage")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(title)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.empty_hint)
        self.model.rowsInserted.connect(self._update_hint)
        self.model.rowsRemoved.connect(self._update_hint)
        self._update_hint()

    def detach(self) -> None:
        self.model.detach()

    def _update_hint(self, *args: Any) -> None:
        self.empty_hint.setVisible(self.model.rowCount() == 0)

    def selected_asset_ids(self) -> list[str]:
        return [i.data(ASSET_ID_ROLE) for i in self.view.selectionModel().selectedIndexes()]

    def current_asset_id(self) -> str:
        index = self.view.currentIndex()
        return index.data(ASSET_ID_ROLE) if index.isValid() else ""

    def select_asset(self, asset_id: str) -> None:
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(ASSET_ID_ROLE) == asset_id:
                self.view.setCurrentIndex(index)
                return

    def _on_view_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.asset_selected.emit(current.data(ASSET_ID_ROLE) if current.isValid() else "")

    def _on_view_files_dropped(self, paths: list[str]) -> None:
        self.editing.import_files(paths)

    def _on_view_double_clicked(self, index: QModelIndex) -> None:
        asset_id = index.data(ASSET_ID_ROLE)
        if asset_id and self.project.asset(asset_id).missing:
            self.relink_requested.emit(asset_id)
        elif asset_id:
            self.add_to_timeline_requested.emit(asset_id)

    def _relink_current(self) -> None:
        asset_id = self.current_asset_id()
        if not asset_id:
            missing = self.project.missing_assets()
            asset_id = missing[0].asset_id if missing else ""
        if asset_id:
            self.relink_requested.emit(asset_id)

    def remove_selected(self) -> None:
        """Remove the selected media from the project (Delete with the bin focused; one undo step)."""
        ids = self.selected_asset_ids()
        if ids:
            self._run(self.editing.remove_assets, ids)

    def _run(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self.editing.message.emit(str(exc))

    def _show_menu(self, pos: Any) -> None:
        index = self.view.indexAt(pos)
        menu = QMenu(self)
        if index.isValid():
            asset_id = index.data(ASSET_ID_ROLE)
            asset = self.project.asset(asset_id)
            menu.addAction(
                "Add to timeline at playhead", lambda: self.add_to_timeline_requested.emit(asset_id)
            )
            if asset.kind is AssetKind.IMAGE:
                roles = menu.addMenu("Reference role")
                for role in ReferenceRole:
                    action = roles.addAction(
                        role.value.capitalize(),
                        lambda r=role: self._run(self.editing.set_asset_role, asset_id, r),
                    )
                    action.setCheckable(True)
                    action.setChecked(asset.role is role)
                roles.addSeparator()
                roles.addAction(
                    "Not a reference", lambda: self._run(self.editing.set_asset_role, asset_id, None)
                )
            menu.addAction(theme.icon("relink"), "Relink…", lambda: self.relink_requested.emit(asset_id))
            menu.addSeparator()
            ids = self.selected_asset_ids() or [asset_id]
            menu.addAction("Remove from project", lambda: self._run(self.editing.remove_assets, ids),
                           QKeySequence("Delete"))
        else:
            menu.addAction(theme.icon("import"), "Import media…", self.import_requested)
        menu.popup(self.view.viewport().mapToGlobal(pos))
