//! The packet access both attach points share: an XDP frame or a TC socket buffer behind one trait.

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{
        bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_pull_data, bpf_xdp_adjust_tail,
        bpf_xdp_load_bytes,
    },
    macros::map,
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use dns_common::stats;

/// What the parser and the rewriter need from the program context.
pub trait Packet {
    /// Address of the first byte (the Ethernet header).
    fn data(&self) -> usize;
    /// Address one past the last directly readable byte.
    ///
    /// Implementations read it from the context with a volatile load every time (`opaque_end`):
    /// otherwise LLVM proves some bounds checks redundant from earlier integer comparisons and
    /// drops them, and the verifier, which only trusts a packet pointer compared with
    /// `data_end`, rejects the access.
    fn data_end(&self) -> usize;
    /// Length of the whole packet in bytes.
    fn len(&self) -> usize;
    /// Makes the whole packet directly readable (TC: pulls non-linear data into the head).
    /// Called once a packet is known to be a datagram for a service address; until then only
    /// the linear head is read (headers outside it count as malformed and pass).
    fn linearize(&mut self) -> Result<(), u32>;
    /// Copies `len` (1..=256) packet bytes at `offset` into `dst`.
    fn load_bytes(&self, offset: usize, dst: *mut u8, len: u32) -> Result<(), u32>;
    /// Grows or shrinks the packet at its tail to `new_len` bytes; packet pointers are stale after.
    fn set_len(&mut self, new_len: usize) -> Result<(), u32>;
}

/// A pointer to a `T` at `offset` bytes into the packet, if the packet is long enough.
/// The comparison against `data_end` is what lets the verifier accept the access.
#[inline(always)]
pub fn ptr_at<T, P: Packet>(p: &P, offset: usize) -> Result<*mut T, u32> {
    let start = p.data() + offset;
    if start + size_of::<T>() > p.data_end() {
        return Err(stats::MALFORMED);
    }
    Ok(start as *mut T)
}

/// Reads a `T` at `offset` with one load per field.
///
/// Packet offsets are not aligned in general. The BPF ISA and the verifier (on x86, without
/// `BPF_F_STRICT_ALIGNMENT`) accept unaligned packet loads and stores, while LLVM's BPF backend
/// would split a `read_unaligned` into single-byte loads and shifts; so the access is typed.
#[inline(always)]
pub fn read<T: Copy, P: Packet>(p: &P, offset: usize) -> Result<T, u32> {
    let ptr = ptr_at::<T, P>(p, offset)?;
    // SAFETY: `ptr_at` checked that the whole `T` lies inside the packet (alignment: see above).
    Ok(unsafe { ptr.read() })
}

/// Writes a `T` at `offset` with one store per field (alignment: see [`read`]).
#[inline(always)]
pub fn write<T: Copy, P: Packet>(p: &P, offset: usize, v: T) -> Result<(), u32> {
    let ptr = ptr_at::<T, P>(p, offset)?;
    // SAFETY: `ptr_at` checked that the whole `T` lies inside the packet.
    unsafe { ptr.write(v) };
    Ok(())
}

/// One per-CPU word the programs use to make the verifier forget a value (see [`opaque`]).
#[map]
static DNS_SCRATCH: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Returns `v` with everything the verifier knows about it forgotten.
///
/// A loop that walks the packet leaves the verifier one state per exit, each with its own
/// precise offsets, and it would verify the rest of the program once per exit (far over its
/// million-instruction budget). Passing the result through map memory, which the verifier
/// does not track, and re-checking its bounds makes every exit look alike, so the rest is
/// verified once. (A stack slot does not work: the verifier tracks spilled scalars.) Costs an
/// inlined per-CPU array lookup, one store and one load.
#[inline(always)]
pub fn opaque(v: u64) -> Result<u64, u32> {
    Ok(opaque2(v, 0)?.0)
}

/// [`opaque`] for two values at once (one map lookup).
#[inline(always)]
pub fn opaque2(a: u64, b: u64) -> Result<(u64, u64), u32> {
    let slot = DNS_SCRATCH.get_ptr_mut(0).ok_or(stats::HELPER_FAILED)? as *mut u64;
    // SAFETY: a per-CPU map value of two words, valid for the whole run and written by no one
    // else meanwhile.
    unsafe {
        core::ptr::write_volatile(slot, a);
        core::ptr::write_volatile(slot.add(1), b);
        Ok((core::ptr::read_volatile(slot), core::ptr::read_volatile(slot.add(1))))
    }
}

/// An XDP frame (always linear here: the programs are not `xdp.frags`).
pub struct Xdp(pub XdpContext);

impl Packet for Xdp {
    #[inline(always)]
    fn data(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: the context pointer is valid for the whole program run; see `opaque_end`.
        unsafe { core::ptr::read_volatile(&(*self.0.ctx).data_end) as usize }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }
    #[inline(always)]
    fn linearize(&mut self) -> Result<(), u32> {
        Ok(())
    }
    #[inline(always)]
    fn load_bytes(&self, offset: usize, dst: *mut u8, len: u32) -> Result<(), u32> {
        // SAFETY: the helper bounds-checks the packet; `dst` holds at least `len` bytes.
        let ret = unsafe { bpf_xdp_load_bytes(self.0.ctx, offset as u32, dst as *mut c_void, len) };
        if ret != 0 {
            return Err(stats::MALFORMED);
        }
        Ok(())
    }
    #[inline(always)]
    fn set_len(&mut self, new_len: usize) -> Result<(), u32> {
        // Through a volatile stack slot: LLVM would otherwise fold this into
        // `new_len + data - data_end`, and the verifier refuses arithmetic on `data_end`.
        let len = self.len();
        // SAFETY: reading back a local just written.
        let len = unsafe { core::ptr::read_volatile(&len) };
        let delta = new_len as i32 - len as i32;
        // SAFETY: the helper validates `delta` against the frame's head and tail room.
        if unsafe { bpf_xdp_adjust_tail(self.0.ctx, delta) } != 0 {
            return Err(stats::HELPER_FAILED);
        }
        Ok(())
    }
}

/// A socket buffer at TC ingress.
pub struct Tc(pub TcContext);

impl Tc {
    #[inline(always)]
    fn skb(&self) -> *mut __sk_buff {
        self.0.skb.skb
    }

    /// Index of the interface the packet arrived on.
    #[inline(always)]
    pub fn ifindex(&self) -> u32 {
        // SAFETY: the context pointer is valid for the whole program run.
        unsafe { (*self.skb()).ifindex }
    }
}

impl Packet for Tc {
    #[inline(always)]
    fn data(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: the context pointer is valid for the whole program run; see `opaque_end`.
        unsafe { core::ptr::read_volatile(&(*self.skb()).data_end) as usize }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len() as usize
    }
    #[inline(always)]
    fn linearize(&mut self) -> Result<(), u32> {
        let len = self.0.len();
        if self.data_end() - self.data() >= len as usize {
            return Ok(());
        }
        // SAFETY: pulling data only makes more of the packet directly readable.
        if unsafe { bpf_skb_pull_data(self.skb(), len) } != 0 {
            return Err(stats::HELPER_FAILED);
        }
        Ok(())
    }
    #[inline(always)]
    fn load_bytes(&self, offset: usize, dst: *mut u8, len: u32) -> Result<(), u32> {
        // SAFETY: the helper bounds-checks the packet; `dst` holds at least `len` bytes.
        let ret = unsafe {
            bpf_skb_load_bytes(
                self.skb() as *const c_void,
                offset as u32,
                dst as *mut c_void,
                len,
            )
        };
        if ret != 0 {
            return Err(stats::MALFORMED);
        }
        Ok(())
    }
    #[inline(always)]
    fn set_len(&mut self, new_len: usize) -> Result<(), u32> {
        // SAFETY: the helper reallocates the buffer as needed; pointers are re-derived after.
        if unsafe { bpf_skb_change_tail(self.skb(), new_len as u32, 0) } != 0 {
            return Err(stats::HELPER_FAILED);
        }
        Ok(())
    }
}
