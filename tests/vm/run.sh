#!/usr/bin/env bash
# tests/vm/run.sh CMD [ARGS...]: runs CMD inside the VM of ../shared/vm/run-in-vm.sh (Debian's
# kernel, with device-mapper thin, loop, ext4, xfs, btrfs), chrooted into this host's
# filesystem, so test binaries built here run unchanged. Installs on the host what the guest
# uses from it first (the runner installs its own QEMU parts). Exit status: CMD's; 125 when the
# VM could not start, 124 on timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runner=$(cd "$here/../../.." && pwd)/shared/vm/run-in-vm.sh
if [ ! -x "$runner" ] && [ ! -f "$runner" ]; then
    echo "tests/vm/run.sh: no VM runner at $runner" >&2
    exit 125
fi
need=()
for tool in lvcreate:lvm2 mkfs.ext4:e2fsprogs mkfs.xfs:xfsprogs thin_dump:thin-provisioning-tools dmsetup:dmsetup blkid:util-linux resize2fs:e2fsprogs xfs_growfs:xfsprogs; do
    command -v "${tool%%:*}" > /dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" > /dev/null
fi
export VM_TIMEOUT=${VM_TIMEOUT:-2400}
exec bash "$runner" "$@"
