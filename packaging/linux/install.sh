#!/usr/bin/env bash
# Install her2viewer's desktop entry, icons and slide MIME types for the current user
# (under ${XDG_DATA_HOME:-~/.local/share}); nothing outside the user's home is touched.
#
#   packaging/linux/install.sh [PATH/TO/her2viewer]   # default: the bundle in dist/, else PATH
#   packaging/linux/install.sh --uninstall
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
sizes=(16 24 32 48 64 128 256)

refresh() {
    # Each cache tool is optional: desktops rebuild their caches without it, only later.
    if command -v update-mime-database >/dev/null; then update-mime-database "$data/mime"; fi
    if command -v update-desktop-database >/dev/null; then
        update-desktop-database "$data/applications"
    fi
    if command -v gtk-update-icon-cache >/dev/null; then
        gtk-update-icon-cache --quiet --ignore-theme-index "$data/icons/hicolor" || true
    fi
}

if [[ "${1:-}" == "--uninstall" ]]; then
    rm -f "$data/applications/her2viewer.desktop" "$data/mime/packages/her2viewer-mime.xml" \
        "$data/icons/hicolor/scalable/apps/her2viewer.svg"
    for size in "${sizes[@]}"; do rm -f "$data/icons/hicolor/${size}x${size}/apps/her2viewer.png"; done
    mkdir -p "$data/mime" "$data/applications" "$data/icons/hicolor"
    refresh
    echo "her2viewer's desktop entry, icons and MIME types removed from $data"
    exit 0
fi

bundle="$here/../../dist/her2viewer/her2viewer"
program=${1:-}
if [[ -z "$program" ]]; then
    if [[ -x "$bundle" ]]; then program=$bundle; else program=$(command -v her2viewer || true); fi
fi
if [[ -z "$program" || ! -x "$program" ]]; then
    echo "install.sh: error: no her2viewer program found; build it with 'make package' or give its path." >&2
    exit 2
fi
program=$(cd "$(dirname "$program")" && pwd)/$(basename "$program")

install -D -m 644 "$here/her2viewer-mime.xml" "$data/mime/packages/her2viewer-mime.xml"
install -D -m 644 "$here/icons/her2viewer.svg" "$data/icons/hicolor/scalable/apps/her2viewer.svg"
for size in "${sizes[@]}"; do
    install -D -m 644 "$here/icons/her2viewer-$size.png" \
        "$data/icons/hicolor/${size}x${size}/apps/her2viewer.png"
done
mkdir -p "$data/applications"
# The desktop entry runs this program by its absolute path, quoted as the spec asks.
sed -e "s|^Exec=her2viewer |Exec=\"$program\" |" -e "s|^TryExec=.*|TryExec=$program|" \
    "$here/her2viewer.desktop" >"$data/applications/her2viewer.desktop.tmp"
mv "$data/applications/her2viewer.desktop.tmp" "$data/applications/her2viewer.desktop"
refresh
echo "her2viewer installed in $data (runs $program)"
