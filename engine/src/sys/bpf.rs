//! bpf(2) for a cgroup device program: load it and attach it to a cgroup.
//! The program itself is built as data by `device_rules`.
//! <https://man7.org/linux/man-pages/man2/bpf.2.html>

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs attached to the cgroup (systemd's, say) run as well: a
/// device is reached only if every one allows it.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One eBPF instruction, as `struct bpf_insn` lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low four bits, src_reg in the high four.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The fields of `union bpf_attr` that BPF_PROG_LOAD reads, up to
/// expected_attach_type; the kernel takes a shorter attr as zeros after it.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The fields BPF_PROG_ATTACH reads.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads `insns` as a BPF_PROG_TYPE_CGROUP_DEVICE program; on a refusal
/// the verifier's log comes with the errno.
pub fn load_device_program(insns: &[Insn]) -> Result<OwnedFd, (Errno, String)> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..6].copy_from_slice(b"kennel");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for BPF_PROG_LOAD of the
    // size passed; the instructions, license and log buffer it points to
    // outlive the call, and the log's size is the buffer's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as libc::c_uint,
        )
    };
    if fd < 0 {
        let errno = Errno::last();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        return Err((
            errno,
            String::from_utf8_lossy(&log[..end]).trim().to_string(),
        ));
    }
    // SAFETY: a non-negative return of BPF_PROG_LOAD is a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches the device program `prog` to the cgroup directory `cgroup`
/// (an fd opened for reading: the kernel refuses an O_PATH one).
pub fn attach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), Errno> {
    let attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for BPF_PROG_ATTACH of the
    // size passed, naming two fds the caller keeps open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>() as libc::c_uint,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(Errno::last()),
    }
}
