//! The zstd context a text file's frames are compressed with, set up as the zstd-safe
//! wrapper cannot: without zstd's block pre-splitter.
//!
//! Since zstd 1.5.7, at level 3 and above, each 128 KiB block is first fingerprinted in
//! parts to decide whether to split it (`ZSTD_c_blockSplitterLevel`, "auto"). Rows are
//! alike from block to block and it never splits them: on the row sets of
//! `benches/formats.rs` the frames are byte for byte the same with it off (level 3, every
//! set), and zstd takes 9–18% less time. So the context turns it off (level 1, "no
//! splitting"). It is an experimental parameter: a zstd that does not know it refuses
//! the setting, and the context keeps zstd's default.
//!
//! Only what compressing a frame needs is wrapped: create with a level, compress one
//! frame whole into a buffer with room for the worst case, reset, free.

use std::ptr::NonNull;

use zstd::zstd_safe::{self, zstd_sys};

/// `ZSTD_c_blockSplitterLevel`'s value for "no splitting".
const NO_PRE_SPLITTING: i32 = 1;

/// A zstd compression context (`ZSTD_CCtx`).
pub(crate) struct FrameContext {
    context: NonNull<zstd_sys::ZSTD_CCtx>,
}

// SAFETY: a zstd context is not tied to the thread that made it; `&mut self` keeps its
// use to one thread at a time.
unsafe impl Send for FrameContext {}

impl FrameContext {
    /// A context at `level` (1–22), pre-splitter off where zstd knows the setting.
    pub(crate) fn new(level: i32) -> std::io::Result<Self> {
        // SAFETY: `ZSTD_createCCtx` takes nothing and returns an owned context or null.
        let context = NonNull::new(unsafe { zstd_sys::ZSTD_createCCtx() })
            .ok_or_else(|| std::io::Error::other("zstd: no memory for a context"))?;
        let context = Self { context };
        context.set(zstd_sys::ZSTD_cParameter::ZSTD_c_compressionLevel, level)?;
        // An unknown parameter is refused and changes nothing: zstd's default stays.
        let _ = context.set(
            zstd_sys::ZSTD_cParameter::ZSTD_c_experimentalParam20,
            NO_PRE_SPLITTING,
        );
        Ok(context)
    }

    fn set(&self, parameter: zstd_sys::ZSTD_cParameter, value: i32) -> std::io::Result<()> {
        // SAFETY: the context is live; zstd checks the parameter and its value.
        check(unsafe { zstd_sys::ZSTD_CCtx_setParameter(self.context.as_ptr(), parameter, value) })
            .map(drop)
    }

    /// `input` compressed as one whole frame into `frame` (emptied first): zstd writes
    /// straight into it, given room for the worst case, in one pass.
    pub(crate) fn compress(&mut self, input: &[u8], frame: &mut Vec<u8>) -> std::io::Result<()> {
        frame.clear();
        frame.reserve(zstd_safe::compress_bound(input.len()));
        // SAFETY: the context is live and used by this thread alone (`&mut self`); zstd
        // reads `input` and writes at most `frame`'s capacity, and returns the bytes
        // written or an error code.
        let written = check(unsafe {
            zstd_sys::ZSTD_compress2(
                self.context.as_ptr(),
                frame.as_mut_ptr().cast(),
                frame.capacity(),
                input.as_ptr().cast(),
                input.len(),
            )
        })?;
        // SAFETY: zstd wrote the first `written` bytes, within the capacity.
        unsafe { frame.set_len(written) };
        Ok(())
    }

    /// Abandons a frame left unfinished by an error (the parameters stay).
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        // SAFETY: the context is live; a session reset keeps its parameters.
        check(unsafe {
            zstd_sys::ZSTD_CCtx_reset(
                self.context.as_ptr(),
                zstd_sys::ZSTD_ResetDirective::ZSTD_reset_session_only,
            )
        })
        .map(drop)
    }
}

impl Drop for FrameContext {
    fn drop(&mut self) {
        // SAFETY: the context is ours and not used after this.
        unsafe {
            zstd_sys::ZSTD_freeCCtx(self.context.as_ptr());
        }
    }
}

/// A zstd result: the size it carries, or the error its code names.
fn check(code: usize) -> std::io::Result<usize> {
    // SAFETY: `ZSTD_isError` takes any code.
    if unsafe { zstd_sys::ZSTD_isError(code) } == 0 {
        Ok(code)
    } else {
        Err(std::io::Error::other(format!(
            "zstd: {}",
            zstd_safe::get_error_name(code)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zstd built in knows the setting and its value (a zstd update that dropped it
    /// would bring the pre-splitter's cost back silently).
    #[test]
    fn zstd_takes_the_pre_splitter_setting() {
        let context = FrameContext::new(3).expect("a context");
        let set = context.set(
            zstd_sys::ZSTD_cParameter::ZSTD_c_experimentalParam20,
            NO_PRE_SPLITTING,
        );
        assert!(set.is_ok(), "{set:?}");
    }

    #[test]
    fn a_frame_decodes_to_its_input_and_errors_are_named() {
        let mut context = FrameContext::new(3).expect("a context");
        let input = b"{\"n\":1}\n".repeat(1000);
        let mut frame = Vec::new();
        context.compress(&input, &mut frame).expect("compresses");
        assert_eq!(zstd::decode_all(frame.as_slice()).ok(), Some(input));
        assert!(context.reset().is_ok());
        let refused = FrameContext::new(3)
            .expect("a context")
            .set(zstd_sys::ZSTD_cParameter::ZSTD_c_windowLog, 100)
            .expect_err("no window of 2^100 bytes");
        assert!(refused.to_string().starts_with("zstd: "), "{refused}");
    }
}
