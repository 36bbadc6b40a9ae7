// Runs a wasm32-wasi guest under Node's built-in WASI (uvwasi), as a quick
// independent reference while the replicode runtime is being built.
//
// usage: node run_node.mjs PROG.wasm HOST_DIR GUEST_DIR [ARGS...]
//   HOST_DIR is preopened as GUEST_DIR (e.g. /data); stdin/stdout/stderr are inherited;
//   the process exits with the guest's exit code. The environment is empty.
//
// uvwasi is not POSIX-exact: fileops shows ~20 known differences (no fcntl flags,
// timestamps rounded, no sorted readdir, refuses ".." symlink targets); use it for
// output comparisons, not as the judge of filesystem semantics.
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
import { argv, exit } from 'node:process';

process.removeAllListeners('warning'); // silence "WASI is experimental"
const [, , prog, hostDir, guestDir, ...args] = argv;
if (!prog || !hostDir || !guestDir) {
  console.error('usage: node run_node.mjs PROG.wasm HOST_DIR GUEST_DIR [ARGS...]');
  exit(2);
}
const wasi = new WASI({
  version: 'preview1',
  args: [prog, ...args],
  env: {},
  preopens: { [guestDir]: hostDir },
  returnOnExit: true,
});
const module = await WebAssembly.compile(readFileSync(prog));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance));
