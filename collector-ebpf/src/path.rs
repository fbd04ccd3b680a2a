//! Paths in the kernel: a (dentry, vfsmount) walked up to the task's root
//! like `d_path`, a caller's path resolved against its cwd or a directory
//! descriptor.

use crate::file::AT_FDCWD;
use crate::task::{current_task, fd_file, field, rdonly_cast, read_kernel};
use aya_ebpf::helpers::gen;
use core::ffi::c_void;
use lumen_common::{KernelOffsets, WalkedPath, COMPONENT_MAX, PATH_COMPONENTS, PATH_TAIL_MAX};

/// The task's root (`fs->root`): (vfsmount, dentry), where walks end.
#[inline(always)]
unsafe fn task_root(o: &KernelOffsets) -> (u64, u64) {
    // SAFETY: BTF-typed loads from the current task.
    unsafe {
        let fs: *const u8 = field(current_task(), o.task_fs);
        if fs.is_null() {
            (0, 0)
        } else {
            (
                field(fs, o.fs_root + o.path_mnt),
                field(fs, o.fs_root + o.path_dentry),
            )
        }
    }
}

/// Walks (`dentry`, `vfsmnt`) up to the task's root like the kernel's
/// d_path, writing component names leaf first into `out`'s fixed slots;
/// every pointer probe-read (see [`walk_path_btf`] for typed ones). The
/// loop index is the slot: mount crossings happen in a small inner loop,
/// so the verifier sees one shape per iteration.
#[inline(never)]
pub(crate) unsafe fn walk_path(
    out: *mut WalkedPath,
    o: &KernelOffsets,
    mut dentry: u64,
    mut vfsmnt: u64,
) {
    // SAFETY: probe reads; writes go to fixed slots of `out`.
    unsafe {
        let (root_mnt, root_dentry) = task_root(o);
        (*out).depth = 0;
        (*out).truncated = 0;
        for i in 0..PATH_COMPONENTS {
            // Up the mount tree while at a mount's root (at most 2 levels).
            for _ in 0..2 {
                let mnt_root: u64 = read_kernel(vfsmnt as *const u8, o.vfsmount_root);
                if dentry != mnt_root || (dentry == root_dentry && vfsmnt == root_mnt) {
                    break;
                }
                let mnt = vfsmnt - o.mount_mnt as u64;
                let parent: u64 = read_kernel(mnt as *const u8, o.mount_parent);
                if parent == mnt || parent == 0 {
                    break;
                }
                dentry = read_kernel(mnt as *const u8, o.mount_mountpoint);
                vfsmnt = parent + o.mount_mnt as u64;
            }
            if dentry == 0 || (dentry == root_dentry && vfsmnt == root_mnt) {
                return;
            }
            let parent: u64 = read_kernel(dentry as *const u8, o.dentry_parent);
            if parent == dentry {
                return;
            }
            component(out, i, read_kernel(dentry as *const u8, o.dentry_name));
            dentry = parent;
        }
        (*out).truncated = 1;
    }
}

/// [`walk_path`] for a BTF-typed `dentry` and `vfsmnt` (a typed file's or
/// the task's `struct path`), on a kernel with `bpf_rdonly_cast`: the
/// walk is plain loads, no helper call per field; only the names are
/// probe-read (byte arrays the verifier has no type for). A mount is
/// crossed through its `struct mount`, which surrounds the vfsmount at a
/// negative offset no typed load may take: the kfunc types it.
#[inline(never)]
pub(crate) unsafe fn walk_path_btf(
    out: *mut WalkedPath,
    o: &KernelOffsets,
    mut dentry: *const u8,
    mut vfsmnt: *const u8,
) {
    // SAFETY: BTF-typed loads (the verifier checks each against the
    // kernel's types); writes go to fixed slots of `out`.
    unsafe {
        let (root_mnt, root_dentry) = task_root(o);
        (*out).depth = 0;
        (*out).truncated = 0;
        let at_root = |dentry: *const u8, vfsmnt: *const u8| {
            dentry as u64 == root_dentry && vfsmnt as u64 == root_mnt
        };
        for i in 0..PATH_COMPONENTS {
            for _ in 0..2 {
                if vfsmnt.is_null() || at_root(dentry, vfsmnt) {
                    break;
                }
                let mnt_root: *const u8 = field(vfsmnt, o.vfsmount_root);
                if dentry != mnt_root {
                    break;
                }
                let mnt = rdonly_cast(vfsmnt as u64 - u64::from(o.mount_mnt), o.btf_mount);
                let parent: *const u8 = field(mnt, o.mount_parent);
                if parent == mnt || parent.is_null() {
                    break;
                }
                dentry = field(mnt, o.mount_mountpoint);
                vfsmnt = parent.add(o.mount_mnt as usize);
            }
            if dentry.is_null() || at_root(dentry, vfsmnt) {
                return;
            }
            let parent: *const u8 = field(dentry, o.dentry_parent);
            if parent == dentry {
                return;
            }
            component(out, i, field(dentry, o.dentry_name));
            dentry = parent;
        }
        (*out).truncated = 1;
    }
}

/// Copies the name at kernel address `name` into slot `i` of `out`.
#[inline(always)]
unsafe fn component(out: *mut WalkedPath, i: usize, name: u64) {
    // SAFETY: slot `i` is one of `out`'s fixed slots (i < PATH_COMPONENTS);
    // the helper validates the kernel address.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*out).components[i]) as *mut u8;
        gen::bpf_probe_read_kernel_str(
            slot as *mut c_void,
            COMPONENT_MAX as u32,
            name as *const c_void,
        );
        (*out).depth = i as u32 + 1;
    }
}

/// Walks the path of the file behind the caller's descriptor `fd` (empty
/// when there is none): typed loads where the kernel lets the program
/// type the file (`bpf_rdonly_cast`), probe reads where not.
#[inline(always)]
pub(crate) unsafe fn walk_fd(out: *mut WalkedPath, o: &KernelOffsets, fd: u64) {
    // SAFETY: see walk_path and walk_path_btf.
    unsafe {
        let file = fd_file(o, fd);
        if file == 0 {
            (*out).depth = 0;
            (*out).truncated = 0;
            return;
        }
        // A constant of the frozen `.rodata`: the verifier walks one branch.
        if o.btf_file != 0 {
            let typed = rdonly_cast(file, o.btf_file);
            walk_path_btf(
                out,
                o,
                field(typed, o.file_f_path + o.path_dentry),
                field(typed, o.file_f_path + o.path_mnt),
            );
        } else {
            walk_path(
                out,
                o,
                read_kernel(file as *const u8, o.file_f_path + o.path_dentry),
                read_kernel(file as *const u8, o.file_f_path + o.path_mnt),
            );
        }
    }
}

/// Fills `out` for `user_path` relative to `dfd` (the cwd for AT_FDCWD);
/// `user_path` 0 means the file behind `dfd` itself (fchmod, fchown). An
/// absolute `user_path` needs no walk.
#[inline(always)]
pub(crate) unsafe fn resolve_path(
    out: *mut WalkedPath,
    o: &KernelOffsets,
    dfd: u64,
    user_path: u64,
) {
    // SAFETY: see walk_path; user reads go through the helper.
    unsafe {
        (*out).depth = 0;
        (*out).truncated = 0;
        let tail = core::ptr::addr_of_mut!((*out).tail) as *mut u8;
        *tail = 0;
        if user_path != 0 {
            gen::bpf_probe_read_user_str(
                tail as *mut c_void,
                PATH_TAIL_MAX as u32,
                user_path as *const c_void,
            );
            if *tail == b'/' {
                return;
            }
        }
        if dfd as u32 != AT_FDCWD as u32 {
            walk_fd(out, o, dfd);
            return;
        }
        // The working directory: the task's `fs` is BTF-typed.
        let fs: *const u8 = field(current_task(), o.task_fs);
        if fs.is_null() {
            return;
        }
        let (dentry, vfsmnt): (*const u8, *const u8) = (
            field(fs, o.fs_pwd + o.path_dentry),
            field(fs, o.fs_pwd + o.path_mnt),
        );
        if o.btf_file != 0 {
            walk_path_btf(out, o, dentry, vfsmnt);
        } else {
            walk_path(out, o, dentry as u64, vfsmnt as u64);
        }
    }
}
