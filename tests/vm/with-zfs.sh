#!/usr/bin/env bash
# tests/vm/with-zfs.sh CMD [ARGS...]: inside the VM, loads the OpenZFS modules from
# $STRATA_ZFS_MODULES (built on the host by ../shared/vm/build-zfs-module.sh), makes the pool
# `strata-test` on a loop device over a sparse file in $STRATA_TEST_DIR (file vdevs on the
# guest's tmpfs fail) and runs CMD with STRATA_ZFS_POOL=strata-test. The pool is destroyed
# and the loop device detached afterwards. Run it under with-scratch.sh.
set -euo pipefail
: "${STRATA_ZFS_MODULES:?set STRATA_ZFS_MODULES to the directory of the zfs .ko files}"
: "${STRATA_TEST_DIR:?run under with-scratch.sh}"
for m in spl zavl znvpair zunicode zcommon icp zlua zzstd zfs; do
    grep -q "^$m " /proc/modules || insmod "$STRATA_ZFS_MODULES/$m.ko"
done
img=$STRATA_TEST_DIR/zpool.img
truncate -s "${STRATA_ZFS_POOL_SIZE:-6G}" "$img"
dev=$(losetup -f --show "$img")
# cachefile=none: the guest's /etc is the host's; nothing about this pool may land there.
zpool create -f -o cachefile=none -O mountpoint=none -O compression=lz4 strata-test "$dev"
export STRATA_ZFS_POOL=strata-test
set +e
"$@"
rc=$?
set -e
if ! zpool destroy -f strata-test; then
    echo "with-zfs.sh: zpool destroy failed" >&2
    [ "$rc" -ne 0 ] || rc=1
fi
losetup -d "$dev"
rm -f "$img"
exit $rc
