#!/usr/bin/env bash
# SkyReels Studio installer for Linux: a private virtual environment, the right torch build, a launcher
# and a desktop entry. Re-run it to update an install in place; --uninstall removes it again.
# Model weights are never touched (they live in the Hugging Face cache or your own folders).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: installer/install.sh [options]

  --prefix DIR        install here (default: ${XDG_DATA_HOME:-~/.local/share}/skyreels-studio)
  --python PY         Python 3.11+ to build the environment with (default: newest python3.1x found)
  --torch KIND        auto (default) | cuda | cpu | pinned
                        auto: a local torch wheel of the pinned version if pip can see one (find-links),
                        else the CUDA build when `nvidia-smi` works, else the CPU build
  --torch-index URL   take torch from this index instead (e.g. https://download.pytorch.org/whl/cu126
                      for older NVIDIA drivers)
  --bin-dir DIR       put a `skyreels-studio` command here (default: ~/.local/bin; "" = none)
  --no-desktop        no desktop entry or icon
  --offline           never use the network: pip gets --no-index (+ the wheel folders in --find-links /
                      PIP_FIND_LINKS)
  --find-links DIR    a folder of wheels for pip (repeatable)
  --reuse-env PY      reuse the packages of the Python environment PY (its site-packages are visible
                      inside the new environment); only the app itself is installed (--no-deps). For
                      air-gapped machines and the test suite.
  --dry-run           print what would be done, change nothing
  --uninstall         remove the install from --prefix (launcher, desktop entry and icon too)
  -h, --help          this text
EOF
}

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
PREFIX="$DATA_HOME/skyreels-studio"
PYTHON=""
TORCH_KIND="auto"
TORCH_INDEX=""
BIN_DIR="$HOME/.local/bin"
DESKTOP=1
OFFLINE=0
REUSE=""
DRY=0
UNINSTALL=0
FIND_LINKS=()
CPU_INDEX="https://download.pytorch.org/whl/cpu"
MARKER=".skyreels-studio-install"
APP_ID="skyreels-studio"

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="${2:?--prefix needs a folder}"; shift ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
        --torch) TORCH_KIND="${2:?--torch needs auto|cuda|cpu|pinned}"; shift ;;
        --torch-index) TORCH_INDEX="${2:?--torch-index needs a URL}"; shift ;;
        --bin-dir) BIN_DIR="${2-}"; shift ;;
        --no-desktop) DESKTOP=0 ;;
        --offline) OFFLINE=1 ;;
        --find-links) FIND_LINKS+=("${2:?--find-links needs a folder}"); shift ;;
        --reuse-env) REUSE="${2:?--reuse-env needs a python}"; shift ;;
        --dry-run) DRY=1 ;;
        --uninstall) UNINSTALL=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
[ "$(uname -s)" = Linux ] || DESKTOP=0   # .desktop entries are a Linux (freedesktop) thing
case "$TORCH_KIND" in auto|cuda|cpu|pinned) ;; *) die "--torch must be auto, cuda, cpu or pinned (got '$TORCH_KIND')" ;; esac
[ -n "$PREFIX" ] || die "--prefix is empty"
PREFIX="$(mkdir -p "$(dirname "$PREFIX")" 2>/dev/null; cd "$(dirname "$PREFIX")" 2>/dev/null && pwd)/$(basename "$PREFIX")" \
    || die "cannot use --prefix $PREFIX"

run() {
    if [ "$DRY" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

DESKTOP_FILE="$DATA_HOME/applications/$APP_ID.desktop"
ICON_FILE="$DATA_HOME/icons/hicolor/scalable/apps/$APP_ID.svg"

# ------------------------------------------------------------------------------------------ uninstall
if [ "$UNINSTALL" = 1 ]; then
    if [ ! -d "$PREFIX" ]; then log "nothing installed in $PREFIX"; exit 0; fi
    # Refuse to delete a folder this script did not create (a mistyped --prefix must not cost data).
    [ -f "$PREFIX/$MARKER" ] || die "$PREFIX was not made by this installer (no $MARKER); remove it by hand if you are sure"
    if [ -f "$PREFIX/install-manifest.txt" ]; then
        while IFS= read -r path; do
            [ -n "$path" ] || continue
            if [ -L "$path" ] || [ -f "$path" ]; then run rm -f "$path"; log "removed $path"; fi
        done < "$PREFIX/install-manifest.txt"
    fi
    # An interrupted install may have written the menu entry without listing it: ours if it runs this prefix.
    if [ -f "$DESKTOP_FILE" ] && grep -q "^Exec=$PREFIX/" "$DESKTOP_FILE"; then
        run rm -f "$DESKTOP_FILE" "$ICON_FILE"; log "removed $DESKTOP_FILE"
    fi
    run rm -rf "$PREFIX"
    log "removed $PREFIX"
    command -v update-desktop-database >/dev/null 2>&1 && run update-desktop-database -q "$DATA_HOME/applications" 2>/dev/null || true
    log "model weights were kept: the Hugging Face cache (${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub})"
    log "and the folders in ${XDG_CONFIG_HOME:-$HOME/.config}/skyreels-studio/models.json; delete those by hand to free the space."
    exit 0
fi

# ------------------------------------------------------------------------------------------ python
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }
if [ -n "$REUSE" ]; then
    py_ok "$REUSE" || die "--reuse-env $REUSE is not a Python 3.11+ interpreter"
    [ -z "$PYTHON" ] && PYTHON="$REUSE"
fi
if [ -z "$PYTHON" ]; then
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && py_ok "$candidate"; then PYTHON="$(command -v "$candidate")"; break; fi
    done
    [ -n "$PYTHON" ] || die "Python 3.11 or newer is needed: install it (e.g. sudo apt-get install python3.11 python3.11-venv) or pass --python"
fi
py_ok "$PYTHON" || die "$PYTHON is not Python 3.11+"
"$PYTHON" -c 'import venv' 2>/dev/null || die "$PYTHON has no venv module: sudo apt-get install python3-venv"
[ -f "$SRC/pyproject.toml" ] && [ -f "$SRC/main.py" ] || die "run this script from a SkyReels Studio checkout ($SRC has no pyproject.toml/main.py)"
TORCH_PIN="$(sed -n 's/^[[:space:]]*"torch==\([^"]*\)".*/\1/p' "$SRC/pyproject.toml" | head -n 1)"
[ -n "$TORCH_PIN" ] || die "no torch==VERSION pin found in $SRC/pyproject.toml"

# ------------------------------------------------------------------------------------------ torch choice
# Wheel folders pip will look in: ours, plus the ones pip already knows from its environment.
SEARCH_LINKS=("${FIND_LINKS[@]+"${FIND_LINKS[@]}"}")
if [ -n "${PIP_FIND_LINKS:-}" ]; then
    for link in $PIP_FIND_LINKS; do SEARCH_LINKS+=("${link#file://}"); done
fi
local_torch_wheel() {
    local dir
    for dir in "${SEARCH_LINKS[@]+"${SEARCH_LINKS[@]}"}"; do
        [ -d "$dir" ] || continue
        if compgen -G "$dir/torch-$TORCH_PIN[-+]*.whl" >/dev/null; then printf '%s\n' "$dir"; return 0; fi
    done
    return 1
}
nvidia_ok() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if [ -n "$REUSE" ]; then
    TORCH_PLAN="reused from $REUSE (not installed)"
elif [ "$TORCH_KIND" = auto ]; then
    if wheel_dir="$(local_torch_wheel)"; then TORCH_KIND=pinned; TORCH_PLAN="pinned torch==$TORCH_PIN from the local wheel in $wheel_dir"
    elif nvidia_ok; then TORCH_KIND=cuda; TORCH_PLAN="CUDA build torch==$TORCH_PIN (nvidia-smi works)"
    else TORCH_KIND=cpu; TORCH_PLAN="CPU build torch==$TORCH_PIN from $CPU_INDEX (no working nvidia-smi)"
    fi
else
    TORCH_PLAN="$TORCH_KIND build torch==$TORCH_PIN (as asked)"
fi
[ -n "$TORCH_INDEX" ] && TORCH_PLAN="$TORCH_PLAN, from $TORCH_INDEX"

PIP_NET=()
[ "$OFFLINE" = 1 ] && PIP_NET+=(--no-index)
for dir in "${FIND_LINKS[@]+"${FIND_LINKS[@]}"}"; do PIP_NET+=(--find-links "$dir"); done

VENV="$PREFIX/venv"
VPY="$VENV/bin/python"
log "source:  $SRC"
log "prefix:  $PREFIX"
log "python:  $PYTHON ($("$PYTHON" -c 'import platform; print(platform.python_version())'))"
log "torch:   $TORCH_PLAN"
[ "$DRY" = 1 ] && log "dry run: nothing is changed"

# ------------------------------------------------------------------------------------------ app files
# A fresh copy of the source on every run (an update removes files the new version no longer has);
# the environment installs it in editable mode, so resources/ stays next to the code.
run mkdir -p "$PREFIX"
if [ "$DRY" = 0 ]; then
    rm -rf "$PREFIX/app.new" "$PREFIX/app.old"
    mkdir -p "$PREFIX/app.new"
    tar -C "$SRC" --exclude=./.venv --exclude=./.git --exclude='__pycache__' --exclude='*.pyc' \
        --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./.hypothesis --exclude=./build \
        --exclude=./dist --exclude='*.egg-info' --exclude=./out --exclude=./result -cf - . \
        | tar -C "$PREFIX/app.new" -xf -
    [ -d "$PREFIX/app" ] && mv "$PREFIX/app" "$PREFIX/app.old"
    mv "$PREFIX/app.new" "$PREFIX/app"
    rm -rf "$PREFIX/app.old"
    printf 'skyreels-studio installer\nsource=%s\n' "$SRC" > "$PREFIX/$MARKER"
else
    printf '+ copy %s -> %s/app\n' "$SRC" "$PREFIX"
fi

# ------------------------------------------------------------------------------------------ environment
if [ -x "$VPY" ] && "$VPY" -c 'import sys' >/dev/null 2>&1; then
    log "reusing the environment in $VENV"
else
    if [ -n "$REUSE" ]; then
        run "$PYTHON" -m venv --without-pip "$VENV"
    else
        run "$PYTHON" -m venv "$VENV"
    fi
fi
if [ -n "$REUSE" ]; then
    reuse_ver="$("$REUSE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$DRY" = 0 ]; then
        venv_ver="$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        [ "$reuse_ver" = "$venv_ver" ] || die "--reuse-env is Python $reuse_ver but the environment is $venv_ver: use --python $REUSE"
        site_dir="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        # Plain path lines: the reused folders join sys.path after our own site-packages.
        "$REUSE" -c 'import site, sys; print("\n".join(p for p in site.getsitepackages() if "site-packages" in p or "dist-packages" in p))' \
            > "$site_dir/_skyreels_reused_env.pth"
    else
        printf '+ link the site-packages of %s into %s\n' "$REUSE" "$VENV"
    fi
fi

PIP=("$VPY" -m pip --disable-pip-version-check)
if [ -z "$REUSE" ]; then
    run "${PIP[@]}" install -q "${PIP_NET[@]+"${PIP_NET[@]}"}" --upgrade pip
    TORCH_ARGS=("torch==$TORCH_PIN")
    case "$TORCH_KIND" in
        cpu) [ -n "$TORCH_INDEX" ] || TORCH_INDEX="$CPU_INDEX" ;;
    esac
    if [ -n "$TORCH_INDEX" ] && [ "$OFFLINE" = 0 ]; then
        TORCH_ARGS+=(--index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple)
    fi
    # An install made for another variant (CPU torch, GPU added later) is replaced, not kept.
    if [ "$DRY" = 0 ] && "$VPY" -c 'import torch' >/dev/null 2>&1; then
        have_cuda="$("$VPY" -c 'import torch; print(1 if torch.version.cuda else 0)')"
        want_cuda=0; [ "$TORCH_KIND" = cuda ] && want_cuda=1
        if [ "$TORCH_KIND" != pinned ] && [ "$have_cuda" != "$want_cuda" ]; then TORCH_ARGS+=(--force-reinstall); fi
    fi
    run "${PIP[@]}" install "${PIP_NET[@]+"${PIP_NET[@]}"}" "${TORCH_ARGS[@]}"
    run "${PIP[@]}" install "${PIP_NET[@]+"${PIP_NET[@]}"}" -e "$PREFIX/app"
else
    run "${PIP[@]}" install -q --no-deps --no-build-isolation --no-index "${PIP_NET[@]+"${PIP_NET[@]}"}" -e "$PREFIX/app"
fi

# ------------------------------------------------------------------------------------------ launcher
MANIFEST="$PREFIX/install-manifest.txt"
LAUNCHER="$PREFIX/bin/skyreels-studio"
if [ "$DRY" = 0 ]; then
    : > "$MANIFEST"
    mkdir -p "$PREFIX/bin"
    cat > "$LAUNCHER" <<EOF
#!/bin/sh
# SkyReels Studio launcher (written by installer/install.sh). Arguments go to main.py:
#   skyreels-studio            the editor
#   skyreels-studio doctor     check this machine;  skyreels-studio models list   model status
exec "$VPY" "$PREFIX/app/main.py" "\$@"
EOF
    chmod +x "$LAUNCHER"
    if [ -n "$BIN_DIR" ]; then
        mkdir -p "$BIN_DIR"
        ln -sfn "$LAUNCHER" "$BIN_DIR/skyreels-studio"
        printf '%s\n' "$BIN_DIR/skyreels-studio" >> "$MANIFEST"
        case ":$PATH:" in *":$BIN_DIR:"*) ;; *) log "note: $BIN_DIR is not on your PATH; add it to run 'skyreels-studio' from a terminal" ;; esac
    fi
else
    printf '+ write launcher %s%s\n' "$LAUNCHER" "${BIN_DIR:+ and link it from $BIN_DIR}"
fi

# ------------------------------------------------------------------------------------------ desktop entry
if [ "$DESKTOP" = 1 ]; then
    icon_src="$PREFIX/app/resources/icons/app.svg"
    if [ "$DRY" = 0 ]; then
        mkdir -p "$(dirname "$DESKTOP_FILE")"
        icon_value="video-x-generic"
        if [ -f "$icon_src" ]; then
            mkdir -p "$(dirname "$ICON_FILE")"
            cp "$icon_src" "$ICON_FILE"
            printf '%s\n' "$ICON_FILE" >> "$MANIFEST"
            icon_value="$ICON_FILE"
        else
            log "note: $icon_src is missing; the menu entry uses a generic icon"
        fi
        sed -e "s|@EXEC@|$LAUNCHER|g" -e "s|@ICON@|$icon_value|g" -e "s|@PATH@|$PREFIX/app|g" \
            "$PREFIX/app/installer/skyreels-studio.desktop.in" > "$DESKTOP_FILE"
        chmod 644 "$DESKTOP_FILE"
        printf '%s\n' "$DESKTOP_FILE" >> "$MANIFEST"
        command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$(dirname "$DESKTOP_FILE")" 2>/dev/null || true
    else
        printf '+ write %s and %s\n' "$DESKTOP_FILE" "$ICON_FILE"
    fi
fi

# ------------------------------------------------------------------------------------------ check
if [ "$DRY" = 0 ]; then
    "$VPY" -c 'import core.model_store, core.generation, main' \
        || die "the installed app does not import; see the messages above"
    "$LAUNCHER" --help >/dev/null || die "the launcher $LAUNCHER does not start"
fi
log "done. Start it from the applications menu or with: $LAUNCHER"
log "check the machine: $LAUNCHER doctor    get the models: $LAUNCHER models list"
log "update: run this script again;  remove: $0 --uninstall${PREFIX:+ --prefix $PREFIX}"
