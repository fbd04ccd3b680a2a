//! Socket syscalls (connect, accept, bind, listen): the socket's 5-tuple
//! at exit, IPv4 and IPv6 only.

use crate::maps::{count_drop, filtered_out, offsets, submit, EVENTS};
use crate::syscalls::{entry_program, leave_pending, take_pending, tp_ret};
use crate::task::{fd_file, fill_header, read_kernel, read_kernel_bytes};
use aya_ebpf::{helpers::gen, macros::tracepoint, programs::TracePointContext};
use core::ffi::c_void;
use lumen_common::{
    drop_index, Creds, KernelOffsets, NetOp, NetRecord, Pending, RecordKind, SOCKADDR_MAX,
};

/// At a socket syscall's entry: keep its arguments.
#[inline(always)]
pub(crate) fn stash_net(args: [u64; 6], op: NetOp) {
    let Some(o) = offsets() else { return };
    if filtered_out(o, true) {
        return;
    }
    let pending = Pending {
        op: op as u32,
        _pad: 0,
        args,
        old: Creds::default(),
    };
    leave_pending(&pending);
}

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;

/// At a socket syscall's exit: the socket's 5-tuple, for IPv4/IPv6 only.
#[inline(always)]
pub(crate) fn finish_net(ret: i64, o: &KernelOffsets, pending: &Pending) {
    // accept returns the new socket; the others act on their first argument.
    let fd = if pending.op == NetOp::Accept as u32 {
        if ret < 0 {
            return;
        }
        ret as u64
    } else {
        pending.args[0]
    };
    // SAFETY: probe reads only.
    let sk: u64 = unsafe {
        let file = fd_file(o, fd);
        if file == 0 {
            return;
        }
        let socket: u64 = read_kernel(file as *const u8, o.file_private_data);
        if socket == 0 {
            return;
        }
        // A socket's file points back at it; other files' private data does not.
        let back: u64 = read_kernel(socket as *const u8, o.socket_file);
        if back != file {
            return;
        }
        read_kernel(socket as *const u8, o.socket_sk)
    };
    if sk == 0 {
        return;
    }
    let s = sk as *const u8;
    // SAFETY: probe reads only.
    let family: u16 = unsafe { read_kernel(s, o.skc_family) };
    if family != AF_INET && family != AF_INET6 {
        return; // unix sockets and the rest: never cross into user space
    }
    let Some(mut entry) = EVENTS.reserve::<NetRecord>(0) else {
        count_drop(drop_index::NETWORK);
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of NetRecord's size; probe reads.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Network, o);
        (*rec).op = pending.op;
        (*rec).family = family;
        (*rec).protocol = read_kernel(s, o.sk_protocol);
        (*rec).sock_type = read_kernel(s, o.sk_type);
        (*rec).local_port = read_kernel(s, o.skc_num);
        let dport: u16 = read_kernel(s, o.skc_dport);
        (*rec).remote_port = u16::from_be(dport);
        (*rec)._pad = 0;
        (*rec).ret = ret;
        (*rec).local_addr = [0; 16];
        (*rec).remote_addr = [0; 16];
        if family == AF_INET {
            let l: [u8; 4] = read_kernel_bytes(s, o.skc_rcv_saddr);
            let r: [u8; 4] = read_kernel_bytes(s, o.skc_daddr);
            let (mut la, mut ra) = ([0u8; 16], [0u8; 16]);
            la[..4].copy_from_slice(&l);
            ra[..4].copy_from_slice(&r);
            (*rec).local_addr = la;
            (*rec).remote_addr = ra;
        } else {
            (*rec).local_addr = read_kernel_bytes(s, o.skc_v6_rcv_saddr);
            (*rec).remote_addr = read_kernel_bytes(s, o.skc_v6_daddr);
        }
        (*rec).user_addr = [0; SOCKADDR_MAX];
        (*rec)._pad2 = 0;
        let uaddr = pending.args[1];
        if (pending.op == NetOp::Connect as u32 || pending.op == NetOp::Bind as u32) && uaddr != 0 {
            gen::bpf_probe_read_user(
                (*rec).user_addr.as_mut_ptr() as *mut c_void,
                SOCKADDR_MAX as u32,
                uaddr as *const c_void,
            );
        }
    }
    submit(entry);
}

#[tracepoint]
pub fn lumen_exit_network(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    take_pending(100..200, |p| finish_net(tp_ret(&ctx), o, p));
    0
}

entry_program!(stash_net, lumen_enter_connect, NetOp::Connect, 3);
entry_program!(stash_net, lumen_enter_accept, NetOp::Accept, 3);
entry_program!(stash_net, lumen_enter_accept4, NetOp::Accept, 4);
entry_program!(stash_net, lumen_enter_bind, NetOp::Bind, 3);
entry_program!(stash_net, lumen_enter_listen, NetOp::Listen, 2);
