//! Kernel structure offsets from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`): CO-RE done in user space, so one build of the
//! kernel programs works on every kernel layout.

use btfparse::{Offset, Readable, TypeInformation};
use lumen_common::KernelOffsets;
use std::path::Path;

/// Why offsets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read kernel BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse kernel BTF: {0}")]
    Parse(String),
    #[error("kernel BTF has no `{0}`")]
    Missing(String),
}

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match self.0.get(start..start.saturating_add(buffer.len())) {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(
                btfparse::ErrorKind::IOError,
                "read past the end of the BTF data",
            )),
        }
    }
}

/// The running kernel's BTF, parsed once: structure offsets and the
/// arguments of raw tracepoints come from it (each parse of the ~5 MiB
/// vmlinux BTF took tens of milliseconds at start).
pub struct KernelBtf {
    types: TypeInformation,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf").finish_non_exhaustive()
    }
}

impl KernelBtf {
    /// Reads and parses the BTF at `btf_path`.
    pub fn read(btf_path: &Path) -> Result<KernelBtf, OffsetsError> {
        let data = std::fs::read(btf_path).map_err(|source| OffsetsError::Read {
            path: btf_path.display().to_string(),
            source,
        })?;
        let types = TypeInformation::new(&Bytes(data))
            .map_err(|e| OffsetsError::Parse(e.message().to_owned()))?;
        Ok(KernelBtf { types })
    }

    /// Whether the kernel's raw tracepoint `name` passes a pointer as its
    /// argument `arg` (0-based, after the context): its BTF
    /// `btf_trace_<name>` typedef is a pointer to a function whose
    /// parameter `arg + 1` is one. Tracepoints change their arguments
    /// across kernels (`oom:mark_victim` took a pid before Linux 6.2 and
    /// takes the task since).
    pub fn raw_tracepoint_arg_is_pointer(&self, name: &str, arg: usize) -> bool {
        self.raw_tracepoint_args(name)
            .is_some_and(|args| args.get(arg) == Some(&true))
    }

    /// How many arguments the kernel's raw tracepoint `name` passes (after
    /// the context): `sched_switch` gained `prev_state` in Linux 5.18.
    pub fn raw_tracepoint_arg_count(&self, name: &str) -> Option<usize> {
        self.raw_tracepoint_args(name).map(|args| args.len())
    }

    /// The arguments of raw tracepoint `name` (after the context), each as
    /// whether it is a pointer; `None` when the BTF does not say.
    fn raw_tracepoint_args(&self, name: &str) -> Option<Vec<bool>> {
        use btfparse::TypeVariant;
        let types = &self.types;
        // Through typedefs, const and volatile to the underlying type.
        let resolve = |mut id: u32| -> Option<TypeVariant> {
            for _ in 0..16 {
                match types.from_id(id)? {
                    TypeVariant::Typedef(t) => id = *t.tid(),
                    TypeVariant::Const(t) => id = *t.tid(),
                    TypeVariant::Volatile(t) => id = *t.tid(),
                    other => return Some(other),
                }
            }
            None
        };
        let Some(TypeVariant::Ptr(ptr)) =
            types.id_of(&format!("btf_trace_{name}")).and_then(resolve)
        else {
            return None;
        };
        let Some(TypeVariant::FuncProto(proto)) = resolve(*ptr.tid()) else {
            return None;
        };
        Some(
            proto
                .parameter_list()
                .iter()
                .skip(1)
                .map(|p| resolve(p.tid()).is_some_and(|t| matches!(t, TypeVariant::Ptr(_))))
                .collect(),
        )
    }

    /// The BTF id of kernel function `name`, when the kernel has it.
    pub fn func_id(&self, name: &str) -> Option<u32> {
        let id = self.types.id_of(name)?;
        matches!(self.types.from_id(id)?, btfparse::TypeVariant::Func(_)).then_some(id)
    }

    /// The BTF id of `struct name`.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        let id = self.types.id_of(name)?;
        matches!(self.types.from_id(id)?, btfparse::TypeVariant::Struct(_)).then_some(id)
    }
}

/// Resolves every offset the kernel programs use; with the id of the v1
/// controller `v1_controller` (its `cgroup_subsys_id`, `<name>_cgrp_id`)
/// when attribution reads one.
pub fn resolve(
    btf: &KernelBtf,
    v1_controller: Option<&str>,
) -> Result<KernelOffsets, OffsetsError> {
    let types = &btf.types;
    let byte_offset = |ty: &str, path: &str| -> Result<u32, OffsetsError> {
        // Renamed members: try each spelling, newest last.
        if let Some((old, new)) = path.split_once('|') {
            let one = |p: &str| {
                let id = types.id_of(ty)?;
                match types.offset_of(id, p).ok()? {
                    (_, Offset::ByteOffset(o)) => Some(o),
                    _ => None,
                }
            };
            return one(old)
                .or_else(|| one(new))
                .ok_or_else(|| OffsetsError::Missing(format!("{ty}.{path}")));
        }
        let missing = || OffsetsError::Missing(format!("{ty}.{path}"));
        let id = types.id_of(ty).ok_or_else(missing)?;
        match types.offset_of(id, path).map_err(|_| missing())? {
            (_, Offset::ByteOffset(o)) => Ok(o),
            (_, Offset::BitOffsetAndSize(bits, _)) if bits % 8 == 0 => Ok(bits / 8),
            _ => Err(missing()),
        }
    };
    Ok(KernelOffsets {
        task_real_parent: byte_offset("task_struct", "real_parent")?,
        task_tgid: byte_offset("task_struct", "tgid")?,
        task_pid: byte_offset("task_struct", "pid")?,
        task_mm: byte_offset("task_struct", "mm")?,
        task_exit_code: byte_offset("task_struct", "exit_code")?,
        mm_arg_start: byte_offset("mm_struct", "arg_start")?,
        mm_arg_end: byte_offset("mm_struct", "arg_end")?,
        task_start_time: byte_offset("task_struct", "real_start_time|start_boottime")?,
        task_cgroups: byte_offset("task_struct", "cgroups")?,
        css_set_dfl_cgrp: byte_offset("css_set", "dfl_cgrp")?,
        cgroup_kn: byte_offset("cgroup", "kn")?,
        kernfs_name: byte_offset("kernfs_node", "name")?,
        kernfs_parent: byte_offset("kernfs_node", "parent|__parent")?,
        task_nsproxy: byte_offset("task_struct", "nsproxy")?,
        nsproxy_pid_ns: byte_offset("nsproxy", "pid_ns_for_children")?,
        nsproxy_mnt_ns: byte_offset("nsproxy", "mnt_ns")?,
        nsproxy_net_ns: byte_offset("nsproxy", "net_ns")?,
        pid_ns_inum: byte_offset("pid_namespace", "ns.inum")?,
        mnt_ns_inum: byte_offset("mnt_namespace", "ns.inum")?,
        net_ns_inum: byte_offset("net", "ns.inum")?,
        task_cred: byte_offset("task_struct", "cred")?,
        cred_uid: byte_offset("cred", "uid")?,
        cred_euid: byte_offset("cred", "euid")?,
        cred_suid: byte_offset("cred", "suid")?,
        cred_fsuid: byte_offset("cred", "fsuid")?,
        cred_gid: byte_offset("cred", "gid")?,
        cred_egid: byte_offset("cred", "egid")?,
        cred_sgid: byte_offset("cred", "sgid")?,
        cred_fsgid: byte_offset("cred", "fsgid")?,
        cred_cap_inheritable: byte_offset("cred", "cap_inheritable")?,
        cred_cap_permitted: byte_offset("cred", "cap_permitted")?,
        cred_cap_effective: byte_offset("cred", "cap_effective")?,
        task_files: byte_offset("task_struct", "files")?,
        files_fdt: byte_offset("files_struct", "fdt")?,
        fdt_fd: byte_offset("fdtable", "fd")?,
        fdt_max_fds: byte_offset("fdtable", "max_fds")?,
        file_dentry: byte_offset("file", "f_path.dentry")?,
        dentry_name: byte_offset("dentry", "d_name.name")?,
        task_fs: byte_offset("task_struct", "fs")?,
        fs_pwd: byte_offset("fs_struct", "pwd")?,
        fs_root: byte_offset("fs_struct", "root")?,
        file_f_path: byte_offset("file", "f_path")?,
        path_mnt: byte_offset("path", "mnt")?,
        path_dentry: byte_offset("path", "dentry")?,
        dentry_parent: byte_offset("dentry", "d_parent")?,
        mount_mnt: byte_offset("mount", "mnt")?,
        mount_parent: byte_offset("mount", "mnt_parent")?,
        mount_mountpoint: byte_offset("mount", "mnt_mountpoint")?,
        vfsmount_root: byte_offset("vfsmount", "mnt_root")?,
        file_private_data: byte_offset("file", "private_data")?,
        socket_sk: byte_offset("socket", "sk")?,
        socket_file: byte_offset("socket", "file")?,
        skc_family: byte_offset("sock", "__sk_common.skc_family")?,
        skc_daddr: byte_offset("sock", "__sk_common.skc_daddr")?,
        skc_rcv_saddr: byte_offset("sock", "__sk_common.skc_rcv_saddr")?,
        skc_dport: byte_offset("sock", "__sk_common.skc_dport")?,
        skc_num: byte_offset("sock", "__sk_common.skc_num")?,
        skc_v6_daddr: byte_offset("sock", "__sk_common.skc_v6_daddr")?,
        skc_v6_rcv_saddr: byte_offset("sock", "__sk_common.skc_v6_rcv_saddr")?,
        sk_protocol: byte_offset("sock", "sk_protocol")?,
        sk_type: byte_offset("sock", "sk_type")?,
        mm_exe_file: byte_offset("mm_struct", "exe_file")?,
        file_inode: byte_offset("file", "f_inode")?,
        inode_sb: byte_offset("inode", "i_sb")?,
        inode_nlink: byte_offset("inode", "i_nlink|__i_nlink")?,
        sb_magic: byte_offset("super_block", "s_magic")?,
        // Absent when overlayfs is a module (its types are in its own BTF).
        ovl_upper_dentry: match (
            byte_offset("ovl_inode", "__upperdentry"),
            byte_offset("ovl_inode", "vfs_inode"),
        ) {
            (Ok(upper), Ok(inode)) if upper > inode => upper - inode,
            _ => 0,
        },
        task_group_leader: byte_offset("task_struct", "group_leader")?,
        task_signal: byte_offset("task_struct", "signal")?,
        signal_live: byte_offset("signal_struct", "live")?,
        // Read from tracefs once it is mounted: see `tracepoint_field`.
        exit_group_dead: 0,
        ready: 1,
        inode_ino: byte_offset("inode", "i_ino")?,
        task_comm: byte_offset("task_struct", "comm")?,
        css_set_subsys: byte_offset("css_set", "subsys")?,
        css_cgroup: byte_offset("cgroup_subsys_state", "cgroup")?,
        kernfs_id: byte_offset("kernfs_node", "id")?,
        cgroup_v1_ssid: match v1_controller {
            Some(c) => subsys_id(types, c)
                .ok_or_else(|| OffsetsError::Missing(format!("cgroup_subsys_id {c}_cgrp_id")))?,
            None => lumen_common::CGROUP_SUBSYS_MAX,
        },
        cgroup_v1_mode: lumen_common::CGROUP_V1_FALLBACK,
        regs_args: syscall_arg_regs(&byte_offset)?,
        // Set when the kfunc calls are linked: see `kfuncs::link`.
        btf_file: 0,
        btf_mount: 0,
        _pad: 0,
    })
}

/// The `pt_regs` members holding a syscall's first four arguments, as the
/// kernel saved them at entry. Exit programs read them there; on arm64 the
/// return value overwrites `regs[0]`, so the first is `orig_x0`.
fn syscall_arg_regs(
    byte_offset: &dyn Fn(&str, &str) -> Result<u32, OffsetsError>,
) -> Result<[u32; 4], OffsetsError> {
    if cfg!(target_arch = "aarch64") {
        let regs = byte_offset("pt_regs", "regs")?;
        Ok([
            byte_offset("pt_regs", "orig_x0")?,
            regs + 8,
            regs + 16,
            regs + 24,
        ])
    } else {
        Ok([
            byte_offset("pt_regs", "di")?,
            byte_offset("pt_regs", "si")?,
            byte_offset("pt_regs", "dx")?,
            byte_offset("pt_regs", "r10")?,
        ])
    }
}

/// The value of `<controller>_cgrp_id` in the kernel's `enum
/// cgroup_subsys_id` (which controllers are built in decides the order).
fn subsys_id(types: &TypeInformation, controller: &str) -> Option<u32> {
    use btfparse::{Integer32Value, TypeVariant};
    let Some(TypeVariant::Enum(e)) = types.from_id(types.id_of("cgroup_subsys_id")?) else {
        return None;
    };
    let name = format!("{controller}_cgrp_id");
    e.named_value_list()
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| match v.value {
            Integer32Value::Unsigned(n) => Some(n),
            Integer32Value::Signed(n) => u32::try_from(n).ok(),
        })
        .filter(|&n| n < lumen_common::CGROUP_SUBSYS_MAX)
}

/// Where field `field` sits in the records of tracepoint `category/name`,
/// from its `format` file under the mounted tracefs; `None` when the
/// tracepoint has no such field (older kernels) or tracefs cannot be read.
pub fn tracepoint_field(category: &str, name: &str, field: &str) -> Option<u32> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|root| {
            std::fs::read_to_string(format!("{root}/events/{category}/{name}/format")).ok()
        })
        .and_then(|format| field_offset(&format, field))
}

/// `field:bool group_dead;\toffset:32;\tsize:1;…` → 32.
fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let named = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .is_some_and(|n| n == field);
        if !named {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_tracepoint_passes_its_victim_task_on_this_kernel() {
        let btf = KernelBtf::read(Path::new("/sys/kernel/btf/vmlinux")).unwrap();
        assert!(btf.raw_tracepoint_arg_is_pointer("mark_victim", 0));
        assert!(
            !btf.raw_tracepoint_arg_is_pointer("mark_victim", 1),
            "the uid"
        );
        assert!(btf.raw_tracepoint_arg_is_pointer("sched_process_fork", 1));
        assert!(!btf.raw_tracepoint_arg_is_pointer("no_such_tracepoint", 0));
        // sched_switch(preempt, prev, next, prev_state) since Linux 5.18.
        assert_eq!(btf.raw_tracepoint_arg_count("sched_switch"), Some(4));
        assert!(btf.raw_tracepoint_arg_is_pointer("sched_switch", 2));
        assert!(btf.raw_tracepoint_arg_is_pointer("sched_wakeup", 0));
        assert_eq!(btf.raw_tracepoint_arg_count("no_such_tracepoint"), None);
    }

    #[test]
    fn resolves_task_and_mm_offsets_on_this_kernel() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            panic!("this test needs kernel BTF at {}", path.display());
        }
        let btf = KernelBtf::read(path).unwrap();
        let o = resolve(&btf, None).unwrap();
        // arg_end directly follows arg_start (both unsigned long).
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
        assert!(o.task_tgid > 0 && o.task_real_parent > o.task_tgid);
        assert!(o.task_mm > 0 && o.task_exit_code > 0);
        // kernfs_node: `name` follows the parent pointer on every layout.
        assert!(o.kernfs_name > o.kernfs_parent);
        assert!(o.task_cgroups > 0 && o.cgroup_kn > 0 && o.net_ns_inum > 0);
        assert!(o.mm_exe_file > 0 && o.file_inode > 0 && o.inode_sb > 0 && o.sb_magic > 0);
        assert!(o.inode_nlink > 0);
        // This kernel has overlayfs built in: the upper dentry follows the
        // embedded inode (struct inode is far larger than 64 bytes).
        assert!(o.ovl_upper_dentry > 64, "{}", o.ovl_upper_dentry);
        assert_eq!(o.cgroup_v1_ssid, lumen_common::CGROUP_SUBSYS_MAX);
        // `css_set.subsys[]` comes before `dfl_cgrp`, a pointer per
        // controller.
        assert!(o.css_set_dfl_cgrp >= o.css_set_subsys + 8 * 4);
        // The controllers' ids: distinct, and in range; one not built in
        // (or misspelt) is named.
        let id = |c| resolve(&btf, Some(c)).unwrap().cgroup_v1_ssid;
        let ids = [id("cpu"), id("memory"), id("pids")];
        assert!(
            ids.iter().all(|&i| i < lumen_common::CGROUP_SUBSYS_MAX),
            "{ids:?}"
        );
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
        let e = resolve(&btf, Some("memroy")).unwrap_err().to_string();
        assert!(e.contains("memroy_cgrp_id"), "{e}");
    }

    #[test]
    fn tracepoint_fields_are_found_by_name_in_a_format_file() {
        let format = "name: sched_process_exit\nID: 369\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        assert_eq!(field_offset(format, "group_dead"), Some(32));
        assert_eq!(field_offset(format, "pid"), Some(24));
        assert_eq!(field_offset(format, "dead"), None);
        let older = format.replace(
            "\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n",
            "",
        );
        assert_eq!(field_offset(&older, "group_dead"), None);
        // This kernel's own tracepoint parses (the field is there on 6.16+),
        // once tracefs is mounted as the source mounts it (a fresh boot has
        // it unmounted).
        crate::sources::ebpf::ensure_tracefs().unwrap();
        assert!(tracepoint_field("sched", "sched_process_exit", "pid").is_some());
    }

    #[test]
    fn names_the_missing_file() {
        let e = KernelBtf::read(Path::new("/nonexistent/vmlinux"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/vmlinux"), "{e}");
    }
}
