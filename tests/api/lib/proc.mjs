// What /proc and the cgroup tree say of a local workload process: its state
// letter, its cgroup v2 directory, and whether it is suspended the way the
// local backend suspends (cgroup freezer when dcmsd has a cgroup, SIGSTOP
// otherwise). Used by the governance API tests and the fault suite.

import fs from 'node:fs';
import path from 'node:path';

/** The state letter of /proc/PID/stat ('T' stopped, 'S' sleeping...), or null when gone. */
export function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return null;
  }
}

/** Alive and not a zombie (a reparented zombie waits for its new parent's wait). */
export function alive(pid) {
  const s = procState(pid);
  return s !== null && s !== 'Z';
}

/** The cgroup v2 directory of `pid` ("" when it has none of dcmsd's). */
export function cgroupDir(pid) {
  let line;
  try {
    line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  } catch {
    return '';
  }
  const rel = line ? line.slice(3) : '';
  if (!rel.includes('/dcms-enclaves-')) return '';
  const mount = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')
    .map((l) => l.split(' ')).find((f) => f[2] === 'cgroup2');
  return mount ? path.join(mount[1], rel) : '';
}

/** Suspended as the backend does it: frozen (cgroup.events "frozen 1") or stopped ('T'). */
export function isSuspended(pid, cg = cgroupDir(pid)) {
  if (cg) {
    try {
      return /^frozen 1$/m.test(fs.readFileSync(path.join(cg, 'cgroup.events'), 'utf8'));
    } catch {
      return false;
    }
  }
  return procState(pid) === 'T';
}
