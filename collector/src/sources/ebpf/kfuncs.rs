//! Kfunc calls in the kernel programs, linked before they load.
//!
//! aya (0.13) links helper calls and calls between the programs' own
//! functions, not calls of kernel functions (kfuncs), which the kernel
//! knows by their BTF id in its own BTF. The programs call a marker helper
//! number instead ([`KFUNC_RDONLY_CAST`]); before the object is handed to
//! aya, every such call instruction is rewritten into a call of the running
//! kernel's `bpf_rdonly_cast` (Linux 6.2) — or, where the kernel has none,
//! into `r0 = 0`: the programs only take that path when
//! `KernelOffsets::btf_file` is set, which it then is not, and the verifier
//! (which knows the frozen `.rodata`) never walks it.
//!
//! `bpf_rdonly_cast` types the `struct file` a program has found by probe
//! reads, and each `struct mount` a path walk crosses, so that what hangs
//! off them (the path's dentries and mounts) is read with plain loads the
//! JIT guards, instead of a helper call per field.

use super::offsets::KernelBtf;
use lumen_common::KFUNC_RDONLY_CAST;
use object::{Object, ObjectSection, SectionKind};

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_ALU64 | BPF_MOV | BPF_K`: `dst = imm`.
const MOV64_IMM: u8 = 0xb7;
/// A call's `src_reg` for a kernel function (`imm` is its BTF id).
const PSEUDO_KFUNC_CALL: u8 = 2;
/// Bytes per instruction.
const INSN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum KfuncError {
    #[error("the kernel programs' object file is not a readable ELF file: {0}")]
    Elf(#[from] object::Error),
    #[error("section {0} of the kernel programs' object file lies outside it")]
    Section(String),
}

/// The programs' object, its kfunc calls linked.
#[derive(Debug)]
pub struct Linked {
    /// 8-byte aligned, as aya's ELF parser needs.
    words: Vec<u64>,
    len: usize,
    /// What the programs may cast to; none without the kfunc.
    pub ids: Option<CastIds>,
    /// How many marker calls were rewritten.
    pub calls: usize,
}

impl Linked {
    pub fn object(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialized bytes; u8 has no
        // alignment or validity requirement.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// What the programs cast to with `bpf_rdonly_cast`: the kernel's BTF ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CastIds {
    /// `bpf_rdonly_cast` itself.
    pub func: u32,
    pub file: u32,
    pub mount: u32,
}

/// The running kernel's [`CastIds`], when it has the kfunc.
pub fn rdonly_cast_ids(btf: &KernelBtf) -> Option<CastIds> {
    Some(CastIds {
        func: btf.func_id("bpf_rdonly_cast")?,
        file: btf.struct_id("file")?,
        mount: btf.struct_id("mount")?,
    })
}

/// Links `object`'s kfunc calls to `ids` ([`rdonly_cast_ids`]), or, with
/// none, makes them dead code.
pub fn link(object: &[u8], ids: Option<CastIds>) -> Result<Linked, KfuncError> {
    let mut words = vec![0u64; object.len().div_ceil(8)];
    // SAFETY: `words` has room for `object.len()` bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), object.len()) };
    bytes.copy_from_slice(object);
    let calls = rewrite_calls(bytes, ids.map(|ids| ids.func))?;
    Ok(Linked {
        words,
        len: object.len(),
        ids,
        calls,
    })
}

/// Rewrites each marker call in the code sections of the ELF `bytes`: into
/// a call of kfunc `func`, or `r0 = 0` without one. How many it rewrote.
fn rewrite_calls(bytes: &mut [u8], func: Option<u32>) -> Result<usize, KfuncError> {
    let mut ranges = Vec::new();
    {
        let file = object::File::parse(&*bytes)?;
        for section in file.sections() {
            if section.kind() != SectionKind::Text {
                continue;
            }
            if let Some((offset, size)) = section.file_range() {
                let name = section.name().unwrap_or("?").to_owned();
                let start =
                    usize::try_from(offset).map_err(|_| KfuncError::Section(name.clone()))?;
                let end = usize::try_from(size)
                    .ok()
                    .and_then(|size| start.checked_add(size))
                    .filter(|&end| end <= bytes.len())
                    .ok_or(KfuncError::Section(name))?;
                ranges.push(start..end);
            }
        }
    }
    let mut rewritten = 0;
    for range in ranges {
        for insn in bytes[range].chunks_exact_mut(INSN) {
            let imm = u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            // A helper call: src_reg (the high nibble of byte 1) is 0.
            if insn[0] != CALL || insn[1] >> 4 != 0 || imm != KFUNC_RDONLY_CAST {
                continue;
            }
            match func {
                Some(id) => {
                    insn[1] = PSEUDO_KFUNC_CALL << 4;
                    insn[2..4].copy_from_slice(&0u16.to_le_bytes());
                    insn[4..8].copy_from_slice(&id.to_le_bytes());
                }
                None => {
                    insn[0] = MOV64_IMM;
                    insn[1] = 0;
                    insn[2..8].fill(0);
                }
            }
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The marker calls in the programs Lumen embeds.
    fn markers(object: &[u8]) -> usize {
        let mut copy = object.to_vec();
        rewrite_calls(&mut copy, Some(1)).unwrap()
    }

    #[test]
    fn marker_calls_become_kfunc_calls_of_this_kernel() {
        let btf = KernelBtf::read(Path::new("/sys/kernel/btf/vmlinux")).unwrap();
        let ids = rdonly_cast_ids(&btf).expect("this kernel (6.18) has bpf_rdonly_cast");
        assert!(ids.func != ids.file && ids.file != ids.mount && ids.mount != 0);
        let func = ids.func;
        let object = super::super::PROGRAMS;
        let before = markers(object);
        assert!(before > 0, "the programs cast the files they open");
        let linked = link(object, Some(ids)).unwrap();
        assert_eq!(linked.calls, before);
        assert_eq!(linked.ids, Some(ids));
        assert_eq!(markers(linked.object()), 0, "no marker call is left");
        assert_eq!(linked.object().len(), object.len());
        // Each rewritten call names the kfunc by its BTF id, src_reg 2.
        let kfunc_calls = linked
            .object()
            .chunks_exact(INSN)
            .filter(|i| {
                i[0] == CALL
                    && i[1] >> 4 == PSEUDO_KFUNC_CALL
                    && u32::from_le_bytes([i[4], i[5], i[6], i[7]]) == func
            })
            .count();
        assert!(kfunc_calls >= before, "{kfunc_calls} < {before}");
    }

    #[test]
    fn without_the_kfunc_marker_calls_become_a_zero_result() {
        let object = super::super::PROGRAMS;
        let before = markers(object);
        let linked = link(object, None).unwrap();
        assert_eq!((linked.calls, linked.ids), (before, None));
        assert_eq!(markers(linked.object()), 0);
        // Each became `r0 = 0` where the call was.
        let zeroed = linked
            .object()
            .chunks_exact(INSN)
            .zip(object.chunks_exact(INSN))
            .filter(|(new, old)| new != old)
            .inspect(|(new, _)| assert_eq!(*new, [MOV64_IMM, 0, 0, 0, 0, 0, 0, 0]))
            .count();
        assert_eq!(zeroed, before);
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error() {
        let mut junk = vec![0u8; 64];
        assert!(matches!(
            rewrite_calls(&mut junk, None),
            Err(KfuncError::Elf(_))
        ));
    }
}
