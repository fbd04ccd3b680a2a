//! Paths in the kernel: a (dentry, vfsmount) walked up to the task's root
//! like `d_path`, a caller's path resolved against its cwd or a directory
//! descriptor.

use crate::file::AT_FDCWD;
use crate::task::{current_task, fd_file, field, read_kernel};
use aya_ebpf::helpers::gen;
use core::ffi::c_void;
use lumen_common::{KernelOffsets, WalkedPath, COMPONENT_MAX, PATH_COMPONENTS, PATH_TAIL_MAX};

/// Walks (`dentry`, `vfsmnt`) up to the task's root like the kernel's
/// d_path, writing component names leaf first into `out`'s fixed slots.
/// The loop index is the slot: mount crossings happen in a small inner loop,
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
        let fs: *const u8 = field(current_task(), o.task_fs);
        let (root_mnt, root_dentry): (u64, u64) = if fs.is_null() {
            (0, 0)
        } else {
            (
                field(fs, o.fs_root + o.path_mnt),
                field(fs, o.fs_root + o.path_dentry),
            )
        };
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
            let name: u64 = read_kernel(dentry as *const u8, o.dentry_name);
            let slot = core::ptr::addr_of_mut!((*out).components[i]) as *mut u8;
            gen::bpf_probe_read_kernel_str(
                slot as *mut c_void,
                COMPONENT_MAX as u32,
                name as *const c_void,
            );
            (*out).depth = i as u32 + 1;
            dentry = parent;
        }
        (*out).truncated = 1;
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
        let (dentry, vfsmnt): (u64, u64) = if dfd as u32 == AT_FDCWD as u32 {
            let task = gen::bpf_get_current_task() as *const u8;
            let fs: u64 = read_kernel(task, o.task_fs);
            if fs == 0 {
                return;
            }
            (
                read_kernel(fs as *const u8, o.fs_pwd + o.path_dentry),
                read_kernel(fs as *const u8, o.fs_pwd + o.path_mnt),
            )
        } else {
            let file = fd_file(o, dfd);
            if file == 0 {
                return;
            }
            (
                read_kernel(file as *const u8, o.file_f_path + o.path_dentry),
                read_kernel(file as *const u8, o.file_f_path + o.path_mnt),
            )
        };
        walk_path(out, o, dentry, vfsmnt);
    }
}
