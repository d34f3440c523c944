//! The WASI preview1 subset filters need, linked under both `wasi_snapshot_preview1` and the
//! legacy `wasi_unstable`: `fd_write` (stdout → info log, stderr → error log), `clock_time_get`,
//! `clock_res_get`, `random_get`, `environ_sizes_get`/`environ_get` and
//! `args_sizes_get`/`args_get` (always empty), `proc_exit` (ends the current call; exit code 0
//! from `_start` counts as success), `sched_yield`, `fd_fdstat_get` (stdio only), and stubs for
//! every file-system/socket call a Rust, TinyGo, AssemblyScript or C module may import:
//! `fd_prestat_get` and friends answer BADF (no preopened directories), path and socket calls
//! answer NOTCAPABLE, everything else NOSYS. Nothing can touch the host's files.

use std::sync::OnceLock;
use std::time::Instant;

use wasmtime::Linker;
use wasmtime::Result;

use crate::abi::{read, write, write_u32, write_u64, Ctx};
use crate::state::HostState;

/// WASI errno values used here.
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
    pub const NOTCAPABLE: i32 = 76;
}

/// The guest called `proc_exit(code)`.
#[derive(Debug, thiserror::Error)]
#[error("filter called proc_exit({0})")]
pub struct ProcExit(pub i32);

/// Module names the subset is linked under.
pub const MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

macro_rules! stub {
    ($l:expr, $m:expr, $name:literal, $ret:expr, ($($t:ty),*)) => {
        $l.func_wrap($m, $name, |_c: Ctx<'_>, $(_: $t),*| -> i32 { $ret })?;
    };
}

fn add_module(l: &mut Linker<HostState>, m: &str) -> Result<()> {
    l.func_wrap(
        m,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, ret: i32| -> Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            let n = (n as u32).min(1024) as i32;
            let vecs = read(&mut c, iovs, n.saturating_mul(8))?;
            let mut msg = Vec::new();
            for v in vecs.chunks_exact(8) {
                let p = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                let len = u32::from_le_bytes([v[4], v[5], v[6], v[7]]);
                msg.extend_from_slice(&read(&mut c, p as i32, len as i32)?);
            }
            let text = String::from_utf8_lossy(&msg);
            let text = text.trim_end_matches('\n');
            if !text.is_empty() {
                crate::abi::logging::log(c.data(), if fd == 1 { 2 } else { 4 }, text);
            }
            write_u32(&mut c, ret, msg.len() as u32)?;
            Ok(errno::SUCCESS)
        },
    )?;
    l.func_wrap(
        m,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, ret: i32| -> Result<i32> {
            let t = match id {
                0 => crate::abi::clock::now_nanos(),
                1..=3 => process_start().elapsed().as_nanos() as u64,
                _ => return Ok(errno::INVAL),
            };
            write_u64(&mut c, ret, t)?;
            Ok(errno::SUCCESS)
        },
    )?;
    l.func_wrap(
        m,
        "clock_res_get",
        |mut c: Ctx<'_>, id: i32, ret: i32| -> Result<i32> {
            if !(0..=3).contains(&id) {
                return Ok(errno::INVAL);
            }
            write_u64(&mut c, ret, 1_000)?;
            Ok(errno::SUCCESS)
        },
    )?;
    l.func_wrap(
        m,
        "random_get",
        |mut c: Ctx<'_>, buf: i32, len: i32| -> Result<i32> {
            let len = len as u32 as usize;
            if len > 1 << 20 {
                return Ok(errno::INVAL);
            }
            let mut bytes = vec![0u8; len];
            rand::fill(&mut bytes[..]);
            write(&mut c, buf as u32, &bytes)?;
            Ok(errno::SUCCESS)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        l.func_wrap(
            m,
            name,
            |mut c: Ctx<'_>, count: i32, size: i32| -> Result<i32> {
                write_u32(&mut c, count, 0)?;
                write_u32(&mut c, size, 0)?;
                Ok(errno::SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        l.func_wrap(m, name, |_c: Ctx<'_>, _a: i32, _b: i32| -> i32 {
            errno::SUCCESS
        })?;
    }
    l.func_wrap(m, "proc_exit", |mut c: Ctx<'_>, code: i32| -> Result<()> {
        c.data_mut().exit_code = Some(code);
        Err(ProcExit(code).into())
    })?;
    stub!(l, m, "proc_raise", errno::NOSYS, (i32));
    stub!(l, m, "sched_yield", errno::SUCCESS, ());
    l.func_wrap(
        m,
        "fd_fdstat_get",
        |mut c: Ctx<'_>, fd: i32, ret: i32| -> Result<i32> {
            if !(0..=2).contains(&fd) {
                return Ok(errno::BADF);
            }
            let mut st = [0u8; 24];
            st[0] = 2; // character device
            let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // fd_read / fd_write
            st[8..16].copy_from_slice(&rights.to_le_bytes());
            write(&mut c, ret as u32, &st)?;
            Ok(errno::SUCCESS)
        },
    )?;
    // File descriptors: nothing is open but stdio, and stdio only writes.
    stub!(l, m, "fd_read", errno::BADF, (i32, i32, i32, i32));
    stub!(l, m, "fd_pread", errno::BADF, (i32, i32, i32, i64, i32));
    stub!(l, m, "fd_pwrite", errno::BADF, (i32, i32, i32, i64, i32));
    stub!(l, m, "fd_close", errno::BADF, (i32));
    stub!(l, m, "fd_seek", errno::BADF, (i32, i64, i32, i32));
    stub!(l, m, "fd_tell", errno::BADF, (i32, i32));
    stub!(l, m, "fd_sync", errno::BADF, (i32));
    stub!(l, m, "fd_datasync", errno::BADF, (i32));
    stub!(l, m, "fd_advise", errno::NOSYS, (i32, i64, i64, i32));
    stub!(l, m, "fd_allocate", errno::NOSYS, (i32, i64, i64));
    stub!(l, m, "fd_fdstat_set_flags", errno::NOSYS, (i32, i32));
    stub!(l, m, "fd_fdstat_set_rights", errno::NOSYS, (i32, i64, i64));
    stub!(l, m, "fd_filestat_get", errno::BADF, (i32, i32));
    stub!(l, m, "fd_filestat_set_size", errno::NOSYS, (i32, i64));
    stub!(
        l,
        m,
        "fd_filestat_set_times",
        errno::NOSYS,
        (i32, i64, i64, i32)
    );
    stub!(l, m, "fd_prestat_get", errno::BADF, (i32, i32));
    stub!(l, m, "fd_prestat_dir_name", errno::BADF, (i32, i32, i32));
    stub!(l, m, "fd_readdir", errno::BADF, (i32, i32, i32, i64, i32));
    stub!(l, m, "fd_renumber", errno::BADF, (i32, i32));
    // Paths: no capability to any directory.
    stub!(
        l,
        m,
        "path_open",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32, i64, i64, i32, i32)
    );
    stub!(
        l,
        m,
        "path_create_directory",
        errno::NOTCAPABLE,
        (i32, i32, i32)
    );
    stub!(
        l,
        m,
        "path_remove_directory",
        errno::NOTCAPABLE,
        (i32, i32, i32)
    );
    stub!(l, m, "path_unlink_file", errno::NOTCAPABLE, (i32, i32, i32));
    stub!(
        l,
        m,
        "path_filestat_get",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32)
    );
    stub!(
        l,
        m,
        "path_filestat_set_times",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i64, i64, i32)
    );
    stub!(
        l,
        m,
        "path_link",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32, i32, i32)
    );
    stub!(
        l,
        m,
        "path_readlink",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32, i32)
    );
    stub!(
        l,
        m,
        "path_rename",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32, i32)
    );
    stub!(
        l,
        m,
        "path_symlink",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32)
    );
    // Polling and sockets.
    stub!(l, m, "poll_oneoff", errno::NOSYS, (i32, i32, i32, i32));
    stub!(l, m, "sock_accept", errno::NOTCAPABLE, (i32, i32, i32));
    stub!(
        l,
        m,
        "sock_recv",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32, i32)
    );
    stub!(
        l,
        m,
        "sock_send",
        errno::NOTCAPABLE,
        (i32, i32, i32, i32, i32)
    );
    stub!(l, m, "sock_shutdown", errno::NOTCAPABLE, (i32, i32));
    Ok(())
}

/// Link the subset under both module names.
pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    for m in MODULES {
        add_module(l, m)?;
    }
    Ok(())
}
