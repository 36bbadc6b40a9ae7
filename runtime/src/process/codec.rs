//! Little-endian, length-prefixed byte encoding for persisted process state.
//!
//! Why a hand-written codec: snapshot bytes are hashed and compared across
//! validators, so the layout must be fixed and independent of any serializer's
//! version. Every integer is little-endian; every variable-length field is
//! preceded by its length as `u32`; readers refuse trailing or missing bytes.

/// A snapshot could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("snapshot truncated while reading {what}: needed {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("snapshot has bad magic {found:?} (expected {expected:?})")]
    BadMagic {
        expected: &'static [u8],
        found: Vec<u8>,
    },
    #[error(
        "snapshot format version {found} is not supported (this node reads version {supported})"
    )]
    Version { found: u32, supported: u32 },
    #[error("snapshot field {what} has invalid value {value}")]
    Invalid { what: &'static str, value: u64 },
    #[error("snapshot has {0} trailing bytes after its last field")]
    Trailing(usize),
}

/// Appends fields to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Raw bytes without a length (fixed-size fields such as magic or hashes).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// Length (`u32`) followed by the bytes. Lengths above `u32::MAX` cannot come
    /// from a 32-bit guest; they are clamped to keep encoding infallible, and the
    /// reader then reports the mismatch.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(bytes);
    }
    pub fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.u32(x);
            }
        }
    }
}

/// Reads fields back in the order they were written.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    /// A reader continuing from the same position (to read a record twice).
    pub fn clone_position(&self) -> Reader<'a> {
        Reader {
            data: self.data,
            pos: self.pos,
        }
    }
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub fn hash(&mut self, what: &'static str) -> Result<[u8; 32], DecodeError> {
        self.array(what)
    }
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.u32(what)?)),
            tag => Err(DecodeError::Invalid {
                what,
                value: u64::from(tag),
            }),
        }
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::Invalid {
                what,
                value: u64::from(tag),
            }),
        }
    }
    /// Checks a magic string followed by a `u32` version.
    pub fn header(&mut self, magic: &'static [u8], version: u32) -> Result<(), DecodeError> {
        self.header_versions(magic, &[version]).map(|_| ())
    }
    /// Like [`Reader::header`], accepting any of `versions`; returns the one found.
    pub fn header_versions(
        &mut self,
        magic: &'static [u8],
        versions: &[u32],
    ) -> Result<u32, DecodeError> {
        let found = self.take(magic.len(), "magic")?;
        if found != magic {
            return Err(DecodeError::BadMagic {
                expected: magic,
                found: found.to_vec(),
            });
        }
        let v = self.u32("format version")?;
        if !versions.contains(&v) {
            return Err(DecodeError::Version {
                found: v,
                supported: versions.last().copied().unwrap_or(0),
            });
        }
        Ok(v)
    }
    /// Fails if any bytes are left.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.data.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.raw(b"MAGIC");
        w.u32(7);
        w.u64(u64::MAX - 1);
        w.bytes(b"hello");
        w.opt_u32(Some(3));
        w.opt_u32(None);
        w.i32(-5);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        r.header(b"MAGIC", 7).unwrap();
        assert_eq!(r.u64("a").unwrap(), u64::MAX - 1);
        assert_eq!(r.bytes("b").unwrap(), b"hello");
        assert_eq!(r.opt_u32("c").unwrap(), Some(3));
        assert_eq!(r.opt_u32("d").unwrap(), None);
        assert_eq!(r.i32("e").unwrap(), -5);
        r.finish().unwrap();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let res = (|| {
                r.header(b"MAGIC", 7)?;
                r.u64("a")?;
                r.bytes("b")?;
                r.opt_u32("c")?;
                r.opt_u32("d")?;
                r.i32("e")
            })();
            assert!(
                matches!(res, Err(DecodeError::Truncated { .. })),
                "cut at {cut}: {res:?}"
            );
        }
    }

    #[test]
    fn wrong_version_is_named() {
        let mut w = Writer::new();
        w.raw(b"M");
        w.u32(2);
        let bytes = w.into_bytes();
        let err = Reader::new(&bytes).header(b"M", 1).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Version {
                found: 2,
                supported: 1
            }
        );
    }
}
