//! Letting go of the program's clean pages once a process has become
//! `--init`'s reaper.
//!
//! The init is a fork of the runner: every page of kennel's code and
//! read-only data that the set-up touched stays mapped in it, and so counts
//! as the init's resident memory for as long as a box runs, though the
//! reaper's loop needs a few pages of it. Those pages are clean copies of
//! the binary on disk; madvise(MADV_DONTNEED) unmaps them from this
//! process alone (the page cache keeps them for anyone else, and a page
//! the loop touches again is read back on its fault). Only pages nothing
//! ever writes are given back: a writable segment, the part that is
//! read-only after relocation (PT_GNU_RELRO) and any object with text
//! relocations keep every page, since their memory differs from the file.
//! <https://man7.org/linux/man-pages/man2/madvise.2.html>

use std::ops::Range;

use nix::errno::Errno;

/// One program header of a loaded object, as far as the choice needs it.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub kind: u32,
    pub flags: u32,
    /// Where it is in memory: the object's load address plus p_vaddr.
    pub start: usize,
    pub len: usize,
}

/// The page-aligned ranges of one object's segments that hold only clean
/// pages of its file: loaded, never writable, outside the RELRO part;
/// none at all when the object has text relocations.
pub fn clean_ranges(
    segments: &[Segment],
    text_relocations: bool,
    page: usize,
) -> Vec<Range<usize>> {
    if text_relocations {
        return Vec::new();
    }
    let relro: Vec<Range<usize>> = segments
        .iter()
        .filter(|s| s.kind == libc::PT_GNU_RELRO)
        .map(|s| round_out(s.start..s.start + s.len, page))
        .collect();
    let mut ranges = Vec::new();
    for s in segments {
        if s.kind != libc::PT_LOAD || s.flags & libc::PF_W != 0 {
            continue;
        }
        // A page shared with a neighbouring segment may hold its data.
        let mut pieces = vec![round_in(s.start..s.start + s.len, page)];
        for r in &relro {
            pieces = pieces.into_iter().flat_map(|p| subtract(p, r)).collect();
        }
        ranges.extend(pieces.into_iter().filter(|p| !p.is_empty()));
    }
    ranges
}

fn round_in(r: Range<usize>, page: usize) -> Range<usize> {
    let start = r.start.div_ceil(page) * page;
    let end = r.end / page * page;
    start..end.max(start)
}

fn round_out(r: Range<usize>, page: usize) -> Range<usize> {
    r.start / page * page..r.end.div_ceil(page) * page
}

fn subtract(a: Range<usize>, b: &Range<usize>) -> Vec<Range<usize>> {
    if b.end <= a.start || b.start >= a.end {
        return vec![a];
    }
    vec![a.start..b.start.max(a.start), b.end.min(a.end)..a.end]
}

/// Unmaps every clean page of the loaded objects from this process;
/// returns how many bytes were given back.
pub fn release_clean_image_pages() -> Result<usize, Errno> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    let mut released = 0;
    for r in loaded_clean_ranges(page) {
        // SAFETY: every range lies in a mapping of a loaded object's file
        // that is never writable and never relocated (see clean_ranges),
        // so its memory equals the file's: dropping the mapping's pages
        // loses nothing, and the next access faults them back from the
        // page cache. No Rust reference is invalidated, since the contents
        // read back are the same bytes.
        let rc = unsafe {
            libc::madvise(
                r.start as *mut libc::c_void,
                r.end - r.start,
                libc::MADV_DONTNEED,
            )
        };
        Errno::result(rc)?;
        released += r.end - r.start;
    }
    Ok(released)
}

fn loaded_clean_ranges(page: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    for object in loaded_objects() {
        ranges.extend(clean_ranges(
            &object.segments,
            object.text_relocations,
            page,
        ));
    }
    ranges
}

struct Object {
    segments: Vec<Segment>,
    text_relocations: bool,
}

fn loaded_objects() -> Vec<Object> {
    let mut objects: Vec<Object> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `collect` once per loaded object, on
    // this thread, with a valid dl_phdr_info, before it returns; the
    // pointer passed through is to `objects`, alive for the whole call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect),
            &mut objects as *mut Vec<Object> as *mut libc::c_void,
        );
    }
    objects
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: called by dl_iterate_phdr with `data` the Vec<Object> that
    // loaded_objects passed, and `info` valid for the call; getauxval
    // only reads the auxiliary vector. dlpi_phdr
    // points at dlpi_phnum program headers of the object, and a PT_DYNAMIC
    // segment at dlpi_addr + p_vaddr is the object's dynamic array, ended
    // by DT_NULL, mapped for as long as the object is loaded.
    unsafe {
        let objects = &mut *(data as *mut Vec<Object>);
        let info = &*info;
        let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        let base = info.dlpi_addr as usize;
        // The vDSO is the kernel's mapping, not a file's: leave it be.
        if base != 0 && base as libc::c_ulong == libc::getauxval(libc::AT_SYSINFO_EHDR) {
            return 0;
        }
        let mut text_relocations = false;
        let mut segments = Vec::with_capacity(headers.len());
        for h in headers {
            if h.p_type == libc::PT_DYNAMIC {
                let mut entry = (base + h.p_vaddr as usize) as *const Dyn;
                while (*entry).d_tag != 0 {
                    let tag = (*entry).d_tag;
                    let value = (*entry).d_un;
                    text_relocations |=
                        tag == DT_TEXTREL || (tag == DT_FLAGS && value & DF_TEXTREL != 0);
                    entry = entry.add(1);
                }
            }
            segments.push(Segment {
                kind: h.p_type,
                flags: h.p_flags,
                start: base + h.p_vaddr as usize,
                len: h.p_memsz as usize,
            });
        }
        objects.push(Object {
            segments,
            text_relocations,
        });
    }
    0
}

/// `Elf64_Dyn`: one entry of an object's dynamic array.
#[repr(C)]
struct Dyn {
    d_tag: i64,
    d_un: u64,
}

const DT_TEXTREL: i64 = 22;
const DT_FLAGS: i64 = 30;
const DF_TEXTREL: u64 = 0x4;

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn load(flags: u32, start: usize, len: usize) -> Segment {
        Segment {
            kind: libc::PT_LOAD,
            flags,
            start,
            len,
        }
    }

    #[test]
    fn code_and_read_only_data_are_given_back_writable_data_is_not() {
        let segments = [
            load(libc::PF_R, 0x10000, 0x3000),
            load(libc::PF_R | libc::PF_X, 0x13000, 0x8000),
            load(libc::PF_R | libc::PF_W, 0x1b000, 0x2000),
        ];
        assert_eq!(
            clean_ranges(&segments, false, PAGE),
            vec![0x10000..0x13000, 0x13000..0x1b000]
        );
    }

    #[test]
    fn the_relro_part_and_pages_shared_with_a_neighbour_are_kept() {
        let segments = [
            // Ends mid-page: that page may hold the next segment's bytes.
            load(libc::PF_R | libc::PF_X, 0x10000, 0x2800),
            load(libc::PF_R, 0x20000, 0x4000),
            Segment {
                kind: libc::PT_GNU_RELRO,
                flags: libc::PF_R,
                start: 0x21000,
                len: 0x1800,
            },
        ];
        assert_eq!(
            clean_ranges(&segments, false, PAGE),
            vec![0x10000..0x12000, 0x20000..0x21000, 0x23000..0x24000]
        );
    }

    #[test]
    fn an_object_with_text_relocations_keeps_every_page() {
        let segments = [load(libc::PF_R | libc::PF_X, 0x10000, 0x8000)];
        assert!(clean_ranges(&segments, true, PAGE).is_empty());
    }

    #[test]
    fn the_vdso_is_not_among_the_ranges() {
        // SAFETY: getauxval only reads the auxiliary vector.
        let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
        assert_ne!(vdso, 0);
        let ranges = loaded_clean_ranges(PAGE);
        assert!(!ranges.is_empty());
        assert!(ranges.iter().all(|r| !r.contains(&vdso)), "{ranges:x?}");
    }

    #[test]
    fn this_test_binary_gives_back_pages_and_still_runs() {
        let released = release_clean_image_pages().unwrap();
        assert!(released > 0);
        // Code and constants read after the release fault back in.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
