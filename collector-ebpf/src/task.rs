//! Readers of the current task and what hangs off it: kernel and user
//! memory, the record header (identity, credentials' ids, cgroup id,
//! namespaces) and the cgroup names it stands for, credentials, and the
//! file behind a descriptor.

use crate::maps::{submit_flags, CGROUP_NAMES, EVENTS, NAMES_SCRATCH};
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, gen};
use core::ffi::c_void;
use lumen_common::{
    CgroupNames, Creds, KernelOffsets, RecordHeader, RecordKind, CGROUP_NAME_MAX,
    CGROUP_SUBSYS_MAX, CGROUP_V1_ALWAYS, COMM_LEN, KFUNC_RDONLY_CAST,
};

/// Reads a `T` at `base + offset` from kernel memory; zero when unreadable.
#[inline(always)]
pub(crate) unsafe fn read_kernel<T: Default>(base: *const u8, offset: u32) -> T {
    let mut out = T::default();
    // SAFETY: bpf_probe_read_kernel validates the source address.
    let rc = unsafe {
        gen::bpf_probe_read_kernel(
            &mut out as *mut T as *mut c_void,
            core::mem::size_of::<T>() as u32,
            base.add(offset as usize) as *const c_void,
        )
    };
    if rc != 0 {
        return T::default();
    }
    out
}

/// The field at `offset` of a BTF-typed kernel object: `base` comes from
/// `bpf_get_current_task_btf` or is a pointer field loaded this way, and
/// `offset` is one of the `.rodata` offsets, known to the verifier. It
/// checks the access against the kernel's BTF and the JIT guards the load
/// (a fault reads 0): no helper call, which a probe read costs per field.
#[inline(always)]
pub(crate) unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: see above; the verifier refuses any other access.
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}

/// The current task, BTF-typed: its fields are read with [`field`].
#[inline(always)]
pub(crate) fn current_task() -> *const u8 {
    // SAFETY: a helper without arguments.
    unsafe { gen::bpf_get_current_task_btf() as *const u8 }
}

/// The number of the namespace at `member` of `nsproxy` (BTF-typed), its
/// `ns.inum` at `inum`; 0 when either pointer is null.
#[inline(always)]
pub(crate) unsafe fn ns_inum(nsproxy: *const u8, member: u32, inum: u32) -> u32 {
    if nsproxy.is_null() {
        return 0;
    }
    // SAFETY: BTF-typed loads.
    unsafe {
        let ns: *const u8 = field(nsproxy, member);
        if ns.is_null() {
            0
        } else {
            field(ns, inum)
        }
    }
}

/// When the process of `task` (BTF-typed) started: see [`process_start`].
#[inline(always)]
unsafe fn process_start_btf(task: *const u8, o: &KernelOffsets) -> u64 {
    // SAFETY: BTF-typed loads.
    unsafe {
        let leader: *const u8 = field(task, o.task_group_leader);
        if leader.is_null() {
            0
        } else {
            field(leader, o.task_start_time)
        }
    }
}

/// When the process of `task` started: its group leader's start, the same
/// for every thread.
#[inline(always)]
pub(crate) unsafe fn process_start(task: *const u8, o: &KernelOffsets) -> u64 {
    // SAFETY: probe reads; a null leader reads as 0.
    unsafe {
        let leader: u64 = read_kernel(task, o.task_group_leader);
        if leader == 0 {
            0
        } else {
            read_kernel(leader as *const u8, o.task_start_time)
        }
    }
}

/// Fills the header from the current task.
#[inline(always)]
pub(crate) unsafe fn fill_header(h: *mut RecordHeader, kind: RecordKind, o: &KernelOffsets) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `h` points at a record being filled; BTF-typed loads.
    unsafe {
        let task = current_task();
        let parent: *const u8 = field(task, o.task_real_parent);
        let ppid: u32 = if parent.is_null() {
            0
        } else {
            field(parent, o.task_tgid)
        };
        (*h).start_time_ns = process_start_btf(task, o);
        (*h).parent_start_time_ns = if parent.is_null() {
            0
        } else {
            process_start_btf(parent, o)
        };
        (*h).image_id = field(task, o.task_mm);
        (*h).kind = kind as u32;
        (*h).cpu = gen::bpf_get_smp_processor_id();
        (*h).ktime_ns = gen::bpf_ktime_get_boot_ns();
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).ppid = ppid;
        // The real ids, as `bpf_get_current_uid_gid` reads them (kuid
        // values are the ids in the initial user namespace).
        let cred: *const u8 = field(task, o.task_cred);
        let (uid, gid) = if cred.is_null() {
            (0, 0)
        } else {
            (field(cred, o.cred_uid), field(cred, o.cred_gid))
        };
        (*h).uid = uid;
        (*h).gid = gid;
        (*h).cgroup_v1 = 0;
        (*h).cgroup_id = dfl_cgroup_id(task, o);
        (*h).comm = comm_of(task, o);

        let nsproxy: *const u8 = field(task, o.task_nsproxy);
        (*h).pid_ns = ns_inum(nsproxy, o.nsproxy_pid_ns, o.pid_ns_inum);
        (*h).mnt_ns = ns_inum(nsproxy, o.nsproxy_mnt_ns, o.mnt_ns_inum);
        (*h).net_ns = ns_inum(nsproxy, o.nsproxy_net_ns, o.net_ns_inum);
        (*h)._pad2 = 0;

        attribute(task, h, o);
    }
}

/// The name (`comm`) of `task` (BTF-typed), as two word loads: the
/// helper's copy, and the zeroing of a buffer for it, cost more.
#[inline(always)]
pub(crate) unsafe fn comm_of(task: *const u8, o: &KernelOffsets) -> [u8; COMM_LEN] {
    // SAFETY: BTF-typed loads within `task_struct.comm`.
    unsafe {
        let words: [u64; 2] = [field(task, o.task_comm), field(task, o.task_comm + 8)];
        core::mem::transmute::<[u64; 2], [u8; COMM_LEN]>(words)
    }
}

/// `bpf_get_current_cgroup_id()` for `task` (BTF-typed) in typed loads:
/// `task->cgroups->dfl_cgrp->kn->id`, the id of its cgroup on the default
/// hierarchy (0 when a pointer on the way is null).
#[inline(always)]
unsafe fn dfl_cgroup_id(task: *const u8, o: &KernelOffsets) -> u64 {
    // SAFETY: BTF-typed loads.
    unsafe {
        let css_set: *const u8 = field(task, o.task_cgroups);
        if css_set.is_null() {
            return 0;
        }
        let cgroup: *const u8 = field(css_set, o.css_set_dfl_cgrp);
        if cgroup.is_null() {
            return 0;
        }
        let kn: *const u8 = field(cgroup, o.cgroup_kn);
        if kn.is_null() {
            return 0;
        }
        field(kn, o.kernfs_id)
    }
}

/// Copies `n` words: volatile, so LLVM cannot turn the loop into a call
/// to its byte-wise `memcpy` (which cost 6 % of a wopen storm's time).
#[inline(always)]
pub(crate) unsafe fn copy_words(src: *const u64, dst: *mut u64, n: usize) {
    for i in 0..n {
        // SAFETY: the caller passes `n` readable and writable words.
        unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
    }
}

/// The root cgroup's id on the default hierarchy (kernfs numbers from 1).
const ROOT_CGROUP_ID: u64 = 1;

/// The header's cgroup id: the cgroup [`cgroup_kn_of`] picks. Its names
/// go to user space once, in a [`lumen_common::CgroupNamesRecord`] ahead
/// of the event, when [`CGROUP_NAMES`] does not have them yet (the first
/// event of a new container, or the first after the map let the cgroup
/// go); records carry only the id. On the unified hierarchy a known cgroup
/// costs one map lookup and no probe read; for a task in its root, with a
/// v1 controller chosen, five probe reads (to the v1 cgroup's id).
#[inline(always)]
unsafe fn attribute(task: *const u8, h: *mut RecordHeader, o: &KernelOffsets) {
    // SAFETY: probe reads; `h` points at a record being filled.
    unsafe {
        let v1 = o.cgroup_v1_ssid < CGROUP_SUBSYS_MAX;
        let dfl_id = (*h).cgroup_id;
        let mut kn = 0;
        if v1 && (o.cgroup_v1_mode == CGROUP_V1_ALWAYS || dfl_id == ROOT_CGROUP_ID) {
            let css_set: u64 = read_kernel(task, o.task_cgroups);
            kn = v1_cgroup_kn(css_set, o);
            if kn != 0 {
                // A v1 controller's cgroup: its own id (the default
                // hierarchy's is the root's, the same for every task).
                (*h).cgroup_id = read_kernel(kn as *const u8, o.kernfs_id);
            }
            (*h).cgroup_v1 = 1;
        }
        let key = (*h).cgroup_key();
        if CGROUP_NAMES.get_ptr(&key).is_some() {
            return;
        }
        if kn == 0 {
            kn = cgroup_kn_of(task, o).0;
        }
        if kn == 0 {
            return;
        }
        let Some(rec) = NAMES_SCRATCH.get_ptr_mut(0) else {
            return;
        };
        (*rec).kind = RecordKind::CgroupNames as u32;
        (*rec)._pad = 0;
        (*rec).key = key;
        cgroup_names_from(kn, &mut (*rec).names, o);
        let _ = CGROUP_NAMES.insert(&key, &(*rec).names, 0);
        // Not counted when the ring is full: the event's own record is
        // next and is counted if it does not fit either, and a reader that
        // missed this one finds the names in the map.
        let size = core::mem::size_of::<lumen_common::CgroupNamesRecord>() as u64;
        let _ = EVENTS.output(&*rec, submit_flags(size));
    }
}

/// The last components of `task`'s cgroup path, leaf first, into `names`
/// (the cgroup [`cgroup_kn_of`] attributes it to).
#[inline(always)]
pub(crate) unsafe fn cgroup_names_of(task: *const u8, names: &mut CgroupNames, o: &KernelOffsets) {
    // SAFETY: probe reads only.
    unsafe { cgroup_names_from(cgroup_kn_of(task, o).0, names, o) }
}

/// The names of kernfs node `kn` and its parents, leaf first.
#[inline(always)]
unsafe fn cgroup_names_from(mut kn: u64, names: &mut CgroupNames, o: &KernelOffsets) {
    // SAFETY: probe reads only.
    unsafe {
        for slot in names.iter_mut() {
            slot[0] = 0;
            if kn == 0 {
                continue;
            }
            let name: u64 = read_kernel(kn as *const u8, o.kernfs_name);
            if name != 0 {
                gen::bpf_probe_read_kernel_str(
                    slot.as_mut_ptr() as *mut c_void,
                    CGROUP_NAME_MAX as u32,
                    name as *const c_void,
                );
            }
            kn = read_kernel(kn as *const u8, o.kernfs_parent);
        }
    }
}

/// The kernfs node of the cgroup `task` is attributed to, and whether it
/// is a v1 controller's; 0 when unreadable.
///
/// `task->cgroups->dfl_cgrp->kn`, its cgroup on the default (unified)
/// hierarchy — unless that is the root (a v1-only host, or a task placed
/// in v1 controllers only) or user space asked for v1 always
/// (`o.cgroup_v1_mode`), and user space chose a mounted v1 controller
/// (`o.cgroup_v1_ssid`): then `task->cgroups->subsys[ssid]->cgroup->kn`.
#[inline(always)]
pub(crate) unsafe fn cgroup_kn_of(task: *const u8, o: &KernelOffsets) -> (u64, bool) {
    // SAFETY: probe reads only.
    unsafe {
        let css_set: u64 = read_kernel(task, o.task_cgroups);
        if css_set == 0 {
            return (0, false);
        }
        let v1 = o.cgroup_v1_ssid < CGROUP_SUBSYS_MAX;
        let mut dfl: u64 = 0;
        if !(v1 && o.cgroup_v1_mode == CGROUP_V1_ALWAYS) {
            let cgrp: u64 = read_kernel(css_set as *const u8, o.css_set_dfl_cgrp);
            if cgrp != 0 {
                dfl = read_kernel(cgrp as *const u8, o.cgroup_kn);
            }
            let root = dfl != 0 && read_kernel::<u64>(dfl as *const u8, o.kernfs_parent) == 0;
            if !v1 || !root {
                return (dfl, false);
            }
        }
        match v1_cgroup_kn(css_set, o) {
            0 => (dfl, false),
            kn => (kn, true),
        }
    }
}

/// The kernfs node of the chosen v1 controller's cgroup in `css_set`,
/// `css_set->subsys[ssid]->cgroup->kn` (three probe reads); 0 when
/// unreadable.
#[inline(always)]
unsafe fn v1_cgroup_kn(css_set: u64, o: &KernelOffsets) -> u64 {
    // SAFETY: probe reads only.
    unsafe {
        if css_set == 0 {
            return 0;
        }
        let slot = o.css_set_subsys + o.cgroup_v1_ssid * 8;
        let css: u64 = read_kernel(css_set as *const u8, slot);
        if css == 0 {
            return 0;
        }
        let cgrp: u64 = read_kernel(css as *const u8, o.css_cgroup);
        if cgrp == 0 {
            return 0;
        }
        read_kernel(cgrp as *const u8, o.cgroup_kn)
    }
}

#[inline(always)]
pub(crate) unsafe fn read_creds(o: &KernelOffsets) -> Creds {
    // SAFETY: probe reads only.
    unsafe {
        let task = gen::bpf_get_current_task() as *const u8;
        let cred: u64 = read_kernel(task, o.task_cred);
        if cred == 0 {
            return Creds::default();
        }
        let c = cred as *const u8;
        Creds {
            uid: read_kernel(c, o.cred_uid),
            euid: read_kernel(c, o.cred_euid),
            suid: read_kernel(c, o.cred_suid),
            fsuid: read_kernel(c, o.cred_fsuid),
            gid: read_kernel(c, o.cred_gid),
            egid: read_kernel(c, o.cred_egid),
            sgid: read_kernel(c, o.cred_sgid),
            fsgid: read_kernel(c, o.cred_fsgid),
            cap_inheritable: read_kernel(c, o.cred_cap_inheritable),
            cap_permitted: read_kernel(c, o.cred_cap_permitted),
            cap_effective: read_kernel(c, o.cred_cap_effective),
        }
    }
}

/// Reads `N` bytes at `base + offset` from kernel memory; zeros if unreadable.
#[inline(always)]
pub(crate) unsafe fn read_kernel_bytes<const N: usize>(base: *const u8, offset: u32) -> [u8; N] {
    let mut out = [0u8; N];
    // SAFETY: bpf_probe_read_kernel validates the source address.
    let rc = unsafe {
        gen::bpf_probe_read_kernel(
            out.as_mut_ptr() as *mut c_void,
            N as u32,
            base.add(offset as usize) as *const c_void,
        )
    };
    if rc != 0 {
        return [0; N];
    }
    out
}

/// Reads a user-space C string into `dst` (empty on failure).
#[inline(always)]
pub(crate) unsafe fn user_str(dst: &mut [u8], src: u64) {
    dst[0] = 0;
    if src != 0 {
        // SAFETY: the helper validates the user address.
        unsafe {
            gen::bpf_probe_read_user_str(
                dst.as_mut_ptr() as *mut c_void,
                dst.len() as u32,
                src as *const c_void,
            );
        }
    }
}

/// A file's inode and its file system's magic number (0s when unknown).
#[inline(always)]
pub(crate) unsafe fn inode_and_magic(o: &KernelOffsets, file: u64) -> (u64, u64) {
    // SAFETY: probe reads only.
    unsafe {
        let inode: u64 = read_kernel(file as *const u8, o.file_inode);
        if inode == 0 {
            return (0, 0);
        }
        let sb: u64 = read_kernel(inode as *const u8, o.inode_sb);
        if sb == 0 {
            return (inode, 0);
        }
        (inode, read_kernel(sb as *const u8, o.sb_magic))
    }
}

/// The `struct file` behind the caller's `fd` (0 if none).
#[inline(always)]
pub(crate) unsafe fn fd_file(o: &KernelOffsets, fd: u64) -> u64 {
    // SAFETY: BTF-typed loads to the fd array, whose slot (an index the
    // verifier cannot bound, checked against max_fds) is probe-read.
    unsafe {
        let files: *const u8 = field(current_task(), o.task_files);
        if files.is_null() {
            return 0;
        }
        let fdt: *const u8 = field(files, o.files_fdt);
        if fdt.is_null() {
            return 0;
        }
        let max: u32 = field(fdt, o.fdt_max_fds);
        if fd >= u64::from(max) {
            return 0;
        }
        let fds: u64 = field(fdt, o.fdt_fd);
        read_kernel((fds + fd * 8) as *const u8, 0)
    }
}

/// `bpf_rdonly_cast(obj, btf_id)`, a kfunc (Linux 6.2): `obj` as an
/// untrusted, read-only pointer to the kernel type `btf_id`, whose fields
/// the verifier then lets the program load directly. aya cannot emit a
/// kfunc call: the program calls a marker helper number that user space
/// rewrites into the kfunc call before loading (`ebpf::kfuncs`).
#[inline(always)]
pub(crate) unsafe fn rdonly_cast(obj: u64, btf_id: u32) -> *const u8 {
    // SAFETY: the marker call is rewritten before load; a kernel never
    // runs it as a helper.
    unsafe {
        let f: unsafe extern "C" fn(u64, u32) -> *const u8 =
            core::mem::transmute(KFUNC_RDONLY_CAST as usize);
        f(obj, btf_id)
    }
}

/// The name (last path component) of the file behind the caller's `fd`.
#[inline(always)]
pub(crate) unsafe fn fd_file_name(dst: &mut [u8], o: &KernelOffsets, fd: u64) {
    dst[0] = 0;
    // SAFETY: probe reads only.
    unsafe {
        let file = fd_file(o, fd);
        if file == 0 {
            return;
        }
        let dentry: u64 = read_kernel(file as *const u8, o.file_dentry);
        if dentry == 0 {
            return;
        }
        let name: u64 = read_kernel(dentry as *const u8, o.dentry_name);
        if name != 0 {
            gen::bpf_probe_read_kernel_str(
                dst.as_mut_ptr() as *mut c_void,
                dst.len() as u32,
                name as *const c_void,
            );
        }
    }
}
