//! WASI preview1 error numbers.
//!
//! The numeric values are the ABI: they are what the guest's `errno` becomes (wasi-libc
//! uses them unchanged as its `E*` constants), so they must never be renumbered. Host
//! errors are never passed through: every failure is mapped to one of these fixed values
//! by the code that detected it, so two validators on different operating systems give
//! the guest the same number.

/// A WASI preview1 `errno` value (`#[repr(u16)]`, official numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum Errno {
    /// No error occurred. System call completed successfully.
    Success = 0,
    /// Argument list too long.
    TooBig = 1,
    /// Permission denied.
    Acces = 2,
    /// Address in use.
    Addrinuse = 3,
    /// Address not available.
    Addrnotavail = 4,
    /// Address family not supported.
    Afnosupport = 5,
    /// Resource unavailable, or operation would block.
    Again = 6,
    /// Connection already in progress.
    Already = 7,
    /// Bad file descriptor.
    Badf = 8,
    /// Bad message.
    Badmsg = 9,
    /// Device or resource busy.
    Busy = 10,
    /// Operation canceled.
    Canceled = 11,
    /// No child processes.
    Child = 12,
    /// Connection aborted.
    Connaborted = 13,
    /// Connection refused.
    Connrefused = 14,
    /// Connection reset.
    Connreset = 15,
    /// Resource deadlock would occur.
    Deadlk = 16,
    /// Destination address required.
    Destaddrreq = 17,
    /// Mathematics argument out of domain of function.
    Dom = 18,
    /// Reserved.
    Dquot = 19,
    /// File exists.
    Exist = 20,
    /// Bad address.
    Fault = 21,
    /// File too large.
    Fbig = 22,
    /// Host is unreachable.
    Hostunreach = 23,
    /// Identifier removed.
    Idrm = 24,
    /// Illegal byte sequence.
    Ilseq = 25,
    /// Operation in progress.
    Inprogress = 26,
    /// Interrupted function.
    Intr = 27,
    /// Invalid argument.
    Inval = 28,
    /// I/O error.
    Io = 29,
    /// Socket is connected.
    Isconn = 30,
    /// Is a directory.
    Isdir = 31,
    /// Too many levels of symbolic links.
    Loop = 32,
    /// File descriptor value too large.
    Mfile = 33,
    /// Too many links.
    Mlink = 34,
    /// Message too large.
    Msgsize = 35,
    /// Reserved.
    Multihop = 36,
    /// Filename too long.
    Nametoolong = 37,
    /// Network is down.
    Netdown = 38,
    /// Connection aborted by network.
    Netreset = 39,
    /// Network unreachable.
    Netunreach = 40,
    /// Too many files open in system.
    Nfile = 41,
    /// No buffer space available.
    Nobufs = 42,
    /// No such device.
    Nodev = 43,
    /// No such file or directory.
    Noent = 44,
    /// Executable file format error.
    Noexec = 45,
    /// No locks available.
    Nolck = 46,
    /// Reserved.
    Nolink = 47,
    /// Not enough space.
    Nomem = 48,
    /// No message of the desired type.
    Nomsg = 49,
    /// Protocol not available.
    Noprotoopt = 50,
    /// No space left on device.
    Nospc = 51,
    /// Function not supported.
    Nosys = 52,
    /// The socket is not connected.
    Notconn = 53,
    /// Not a directory or a symbolic link to a directory.
    Notdir = 54,
    /// Directory not empty.
    Notempty = 55,
    /// State not recoverable.
    Notrecoverable = 56,
    /// Not a socket.
    Notsock = 57,
    /// Not supported, or operation not supported on socket.
    Notsup = 58,
    /// Inappropriate I/O control operation.
    Notty = 59,
    /// No such device or address.
    Nxio = 60,
    /// Value too large to be stored in data type.
    Overflow = 61,
    /// Previous owner died.
    Ownerdead = 62,
    /// Operation not permitted.
    Perm = 63,
    /// Broken pipe.
    Pipe = 64,
    /// Protocol error.
    Proto = 65,
    /// Protocol not supported.
    Protonosupport = 66,
    /// Protocol wrong type for socket.
    Prototype = 67,
    /// Result too large.
    Range = 68,
    /// Read-only file system.
    Rofs = 69,
    /// Invalid seek.
    Spipe = 70,
    /// No such process.
    Srch = 71,
    /// Reserved.
    Stale = 72,
    /// Connection timed out.
    Timedout = 73,
    /// Text file busy.
    Txtbsy = 74,
    /// Cross-device link.
    Xdev = 75,
    /// Extension: Capabilities insufficient.
    Notcapable = 76,
}

/// Every errno in numeric order, so `ALL[n as usize] as u16 == n`.
const ALL: [Errno; 77] = [
    Errno::Success,
    Errno::TooBig,
    Errno::Acces,
    Errno::Addrinuse,
    Errno::Addrnotavail,
    Errno::Afnosupport,
    Errno::Again,
    Errno::Already,
    Errno::Badf,
    Errno::Badmsg,
    Errno::Busy,
    Errno::Canceled,
    Errno::Child,
    Errno::Connaborted,
    Errno::Connrefused,
    Errno::Connreset,
    Errno::Deadlk,
    Errno::Destaddrreq,
    Errno::Dom,
    Errno::Dquot,
    Errno::Exist,
    Errno::Fault,
    Errno::Fbig,
    Errno::Hostunreach,
    Errno::Idrm,
    Errno::Ilseq,
    Errno::Inprogress,
    Errno::Intr,
    Errno::Inval,
    Errno::Io,
    Errno::Isconn,
    Errno::Isdir,
    Errno::Loop,
    Errno::Mfile,
    Errno::Mlink,
    Errno::Msgsize,
    Errno::Multihop,
    Errno::Nametoolong,
    Errno::Netdown,
    Errno::Netreset,
    Errno::Netunreach,
    Errno::Nfile,
    Errno::Nobufs,
    Errno::Nodev,
    Errno::Noent,
    Errno::Noexec,
    Errno::Nolck,
    Errno::Nolink,
    Errno::Nomem,
    Errno::Nomsg,
    Errno::Noprotoopt,
    Errno::Nospc,
    Errno::Nosys,
    Errno::Notconn,
    Errno::Notdir,
    Errno::Notempty,
    Errno::Notrecoverable,
    Errno::Notsock,
    Errno::Notsup,
    Errno::Notty,
    Errno::Nxio,
    Errno::Overflow,
    Errno::Ownerdead,
    Errno::Perm,
    Errno::Pipe,
    Errno::Proto,
    Errno::Protonosupport,
    Errno::Prototype,
    Errno::Range,
    Errno::Rofs,
    Errno::Spipe,
    Errno::Srch,
    Errno::Stale,
    Errno::Timedout,
    Errno::Txtbsy,
    Errno::Xdev,
    Errno::Notcapable,
];

impl Errno {
    /// The raw ABI value written into guest memory / returned from an import.
    pub const fn raw(self) -> u16 {
        self as u16
    }

    /// The errno for a raw ABI value, or `None` if the value is not a preview1 errno.
    pub fn from_raw(raw: u16) -> Option<Errno> {
        ALL.get(usize::from(raw)).copied()
    }

    /// The POSIX-style symbolic name, e.g. `"ENOENT"`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Success => "ESUCCESS",
            Errno::TooBig => "E2BIG",
            Errno::Acces => "EACCES",
            Errno::Addrinuse => "EADDRINUSE",
            Errno::Addrnotavail => "EADDRNOTAVAIL",
            Errno::Afnosupport => "EAFNOSUPPORT",
            Errno::Again => "EAGAIN",
            Errno::Already => "EALREADY",
            Errno::Badf => "EBADF",
            Errno::Badmsg => "EBADMSG",
            Errno::Busy => "EBUSY",
            Errno::Canceled => "ECANCELED",
            Errno::Child => "ECHILD",
            Errno::Connaborted => "ECONNABORTED",
            Errno::Connrefused => "ECONNREFUSED",
            Errno::Connreset => "ECONNRESET",
            Errno::Deadlk => "EDEADLK",
            Errno::Destaddrreq => "EDESTADDRREQ",
            Errno::Dom => "EDOM",
            Errno::Dquot => "EDQUOT",
            Errno::Exist => "EEXIST",
            Errno::Fault => "EFAULT",
            Errno::Fbig => "EFBIG",
            Errno::Hostunreach => "EHOSTUNREACH",
            Errno::Idrm => "EIDRM",
            Errno::Ilseq => "EILSEQ",
            Errno::Inprogress => "EINPROGRESS",
            Errno::Intr => "EINTR",
            Errno::Inval => "EINVAL",
            Errno::Io => "EIO",
            Errno::Isconn => "EISCONN",
            Errno::Isdir => "EISDIR",
            Errno::Loop => "ELOOP",
            Errno::Mfile => "EMFILE",
            Errno::Mlink => "EMLINK",
            Errno::Msgsize => "EMSGSIZE",
            Errno::Multihop => "EMULTIHOP",
            Errno::Nametoolong => "ENAMETOOLONG",
            Errno::Netdown => "ENETDOWN",
            Errno::Netreset => "ENETRESET",
            Errno::Netunreach => "ENETUNREACH",
            Errno::Nfile => "ENFILE",
            Errno::Nobufs => "ENOBUFS",
            Errno::Nodev => "ENODEV",
            Errno::Noent => "ENOENT",
            Errno::Noexec => "ENOEXEC",
            Errno::Nolck => "ENOLCK",
            Errno::Nolink => "ENOLINK",
            Errno::Nomem => "ENOMEM",
            Errno::Nomsg => "ENOMSG",
            Errno::Noprotoopt => "ENOPROTOOPT",
            Errno::Nospc => "ENOSPC",
            Errno::Nosys => "ENOSYS",
            Errno::Notconn => "ENOTCONN",
            Errno::Notdir => "ENOTDIR",
            Errno::Notempty => "ENOTEMPTY",
            Errno::Notrecoverable => "ENOTRECOVERABLE",
            Errno::Notsock => "ENOTSOCK",
            Errno::Notsup => "ENOTSUP",
            Errno::Notty => "ENOTTY",
            Errno::Nxio => "ENXIO",
            Errno::Overflow => "EOVERFLOW",
            Errno::Ownerdead => "EOWNERDEAD",
            Errno::Perm => "EPERM",
            Errno::Pipe => "EPIPE",
            Errno::Proto => "EPROTO",
            Errno::Protonosupport => "EPROTONOSUPPORT",
            Errno::Prototype => "EPROTOTYPE",
            Errno::Range => "ERANGE",
            Errno::Rofs => "EROFS",
            Errno::Spipe => "ESPIPE",
            Errno::Srch => "ESRCH",
            Errno::Stale => "ESTALE",
            Errno::Timedout => "ETIMEDOUT",
            Errno::Txtbsy => "ETXTBSY",
            Errno::Xdev => "EXDEV",
            Errno::Notcapable => "ENOTCAPABLE",
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.raw())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_the_preview1_abi() {
        assert_eq!(Errno::Success.raw(), 0);
        assert_eq!(Errno::TooBig.raw(), 1);
        assert_eq!(Errno::Acces.raw(), 2);
        assert_eq!(Errno::Badf.raw(), 8);
        assert_eq!(Errno::Exist.raw(), 20);
        assert_eq!(Errno::Fault.raw(), 21);
        assert_eq!(Errno::Fbig.raw(), 22);
        assert_eq!(Errno::Inval.raw(), 28);
        assert_eq!(Errno::Io.raw(), 29);
        assert_eq!(Errno::Isdir.raw(), 31);
        assert_eq!(Errno::Loop.raw(), 32);
        assert_eq!(Errno::Mfile.raw(), 33);
        assert_eq!(Errno::Nametoolong.raw(), 37);
        assert_eq!(Errno::Noent.raw(), 44);
        assert_eq!(Errno::Nospc.raw(), 51);
        assert_eq!(Errno::Nosys.raw(), 52);
        assert_eq!(Errno::Notdir.raw(), 54);
        assert_eq!(Errno::Notempty.raw(), 55);
        assert_eq!(Errno::Notcapable.raw(), 76);
    }

    #[test]
    fn from_raw_round_trips_and_rejects_unknown_values() {
        for raw in 0..=76u16 {
            let e = Errno::from_raw(raw).expect("every value up to 76 is an errno");
            assert_eq!(e.raw(), raw);
        }
        assert_eq!(Errno::from_raw(77), None);
        assert_eq!(Errno::Noent.to_string(), "ENOENT (44)");
    }
}
