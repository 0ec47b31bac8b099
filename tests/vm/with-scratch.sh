#!/usr/bin/env bash
# tests/vm/with-scratch.sh CMD [ARGS...]: inside the VM, makes ext4 on the scratch disk
# /dev/vda (VM_DISK), mounts it and runs CMD with STRATA_TEST_DIR there: test trees need a
# disk filesystem (the guest's /tmp is tmpfs, without user xattrs on Debian's 6.1 kernel).
# Mounts cgroup2 at /sys/fs/cgroup too when the guest has none there (runc needs one).
set -euo pipefail
if [ ! -b /dev/vda ]; then
    echo "with-scratch.sh: no scratch disk /dev/vda (set VM_DISK)" >&2
    exit 2
fi
mkfs.ext4 -q -F /dev/vda
mkdir -p /run/strata-scratch
mount /dev/vda /run/strata-scratch
export STRATA_TEST_DIR=/run/strata-scratch
# Temporary directories too (tempfile reads TMPDIR): a daemon under test keeps its data root there.
export TMPDIR=/run/strata-scratch
cgroup_mounted=
if ! grep -q ' /sys/fs/cgroup ' /proc/self/mountinfo; then
    mount -t cgroup2 none /sys/fs/cgroup && cgroup_mounted=1
fi
set +e
"$@"
rc=$?
set -e
cd /
[ -z "$cgroup_mounted" ] || umount /sys/fs/cgroup || true
umount /run/strata-scratch || umount -l /run/strata-scratch
exit $rc
