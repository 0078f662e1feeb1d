// Starts and stops real dcmsd processes for the API tests.
//
// startServer() spawns $DCMS_BIN (default <repo>/build/dcmsd) on 127.0.0.1
// with an ephemeral port and a fresh data directory, on the backend chosen by
// DCMS_TEST_BACKEND (sqlite, the default, or postgres with DCMS_TEST_PG_URL
// naming an admin URL of the test cluster: each server gets its own freshly
// created database). It resolves once dcmsd logs its "listening" line.
//
// Every started server is tracked; an after() hook of the test file and a
// process 'exit' handler stop whatever is still running, drop the test
// databases and remove the data directories, so nothing leaks.

import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const dcmsBin = process.env.DCMS_BIN
  ? path.resolve(process.env.DCMS_BIN)
  : path.join(repoRoot, 'build', 'dcmsd');
export const backend = process.env.DCMS_TEST_BACKEND === 'postgres' ? 'postgres' : 'sqlite';

const STARTUP_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 15000;
const PSQL_TIMEOUT_MS = 30000;
const MAX_CAPTURE_BYTES = 64 * 1024 * 1024;

const running = new Set();

function pgAdminUrl() {
  const url = process.env.DCMS_TEST_PG_URL;
  if (!url) {
    throw new Error('DCMS_TEST_BACKEND=postgres needs DCMS_TEST_PG_URL (admin URL of the test cluster, ' +
      'e.g. postgres://dcms:pw@127.0.0.1:5433/postgres; scripts/pg-cluster.sh start DIR prints it)');
  }
  return url;
}

/** Runs one SQL statement on the test cluster as its admin user. */
export function psqlAdmin(sql) {
  execFileSync('psql', [pgAdminUrl(), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: PSQL_TIMEOUT_MS,
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  });
}

function createTestDatabase() {
  const name = `dcms_t_${randomBytes(6).toString('hex')}`;
  try {
    psqlAdmin(`CREATE DATABASE ${name}`);
  } catch (e) {
    throw new Error(`cannot create test database ${name}: ${e.stderr?.toString() || e.message}`);
  }
  const u = new URL(pgAdminUrl());
  u.pathname = `/${name}`;
  return { name, url: u.toString() };
}

function dropTestDatabase(name) {
  try {
    psqlAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } catch (e) {
    // Cleanup must not hide the real failure; say it and go on.
    process.stderr.write(`# warning: cannot drop test database ${name}: ${e.stderr?.toString() || e.message}\n`);
  }
}

/** The environment for dcmsd: ours minus every inherited DCMS_* variable. */
function childEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('DCMS_')) env[k] = v;
  }
  return { ...env, ...extra };
}

/**
 * Spawns dcmsd and waits until it listens.
 * @param {{env?: Record<string,string>}} opts extra environment (overrides ours)
 * @returns {Promise<{url:string, port:number, proc:import('node:child_process').ChildProcess,
 *   logs:() => object[], stderr:() => string, stop:(signal?:string, timeoutMs?:number) => Promise<number|string>,
 *   dataDir:string, backend:string, database:string|null, exited:Promise<number|string>}>}
 */
export async function startServer({ env = {} } = {}) {
  if (!fs.existsSync(dcmsBin)) {
    throw new Error(`dcmsd binary not found at ${dcmsBin} (build it, or set DCMS_BIN)`);
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcms-api-'));
  let db = null;
  const base = {
    DCMS_LISTEN: '127.0.0.1:0',
    DCMS_DATA_DIR: dataDir,
    DCMS_LOG_LEVEL: 'info',
  };
  if (backend === 'postgres') {
    try {
      db = createTestDatabase();
    } catch (e) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw e;
    }
    base.DCMS_DATABASE_URL = db.url;
  }

  const proc = spawn(dcmsBin, [], {
    env: childEnv({ ...base, ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  let stderrText = '';
  let stdoutText = '';
  let partial = '';
  const parsed = [];
  let onLine = null;

  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    if (stderrText.length < MAX_CAPTURE_BYTES) stderrText += chunk;
    partial += chunk;
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.trim()) continue;
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        continue; // not a log line (e.g. a sanitizer report); kept in stderr()
      }
      parsed.push(obj);
      if (onLine) onLine(obj);
    }
  });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk) => {
    if (stdoutText.length < MAX_CAPTURE_BYTES) stdoutText += chunk;
  });

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(code ?? signal);
    });
  });
  proc.on('error', () => {}); // surfaces as an exit / startup failure below

  const server = {
    proc,
    dataDir,
    backend,
    database: db?.name ?? null,
    exited,
    url: null,
    port: null,
    logs: () => parsed.slice(),
    stderr: () => stderrText,
    stdout: () => stdoutText,
    stop: null,
  };

  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    running.delete(server);
    if (db) dropTestDatabase(db.name);
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  server._cleanupSync = () => {
    if (!exitInfo) {
      try {
        proc.kill('SIGKILL');
      } catch {}
    }
    cleanup();
  };

  let stopping = null;
  // Sends `signal`, waits (bounded) for the exit, then cleans up. Resolves
  // with the exit code (or the signal name if dcmsd died of a signal);
  // rejects if dcmsd had to be SIGKILLed.
  server.stop = (signal = 'SIGTERM', timeoutMs = STOP_TIMEOUT_MS) => {
    if (stopping) return stopping;
    stopping = (async () => {
      try {
        if (!exitInfo) {
          proc.kill(signal);
          let timer;
          const timedOut = new Promise((resolve) => {
            timer = setTimeout(() => resolve('timeout'), timeoutMs);
          });
          const r = await Promise.race([exited, timedOut]);
          clearTimeout(timer);
          if (r === 'timeout') {
            proc.kill('SIGKILL');
            await exited;
            throw new Error(`dcmsd (pid ${proc.pid}) did not exit within ${timeoutMs} ms of ${signal}; ` +
              `killed it. stderr tail:\n${stderrText.slice(-4000)}`);
          }
        }
        return exitInfo.code ?? exitInfo.signal;
      } finally {
        // Give the stderr pipe a moment to drain, for the logs of the last requests.
        await new Promise((r) => setTimeout(r, 20));
        cleanup();
      }
    })();
    return stopping;
  };

  running.add(server);

  try {
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`dcmsd did not log "listening" within ${STARTUP_TIMEOUT_MS} ms; stderr:\n${stderrText}`));
      }, STARTUP_TIMEOUT_MS);
      const check = (obj) => {
        if (obj.msg === 'listening' && Number.isInteger(obj.port) && obj.port > 0) {
          clearTimeout(timer);
          onLine = null;
          resolve(obj.port);
        }
      };
      for (const obj of parsed) check(obj);
      onLine = check;
      exited.then((c) => {
        clearTimeout(timer);
        reject(new Error(`dcmsd exited (${c}) before listening; stderr:\n${stderrText}`));
      });
      proc.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot spawn ${dcmsBin}: ${e.message}`));
      });
    });
    server.port = port;
    server.url = `http://127.0.0.1:${port}`;
    // A dcmsd that ends without stop() (a crash, a sanitizer report) says so in the test log,
    // with what it wrote last: the requests that follow only see "fetch failed".
    proc.once('close', (code, signal) => {
      if (stopping) return;
      const tail = stderrText.slice(-6000).split('\n').map((l) => `# ${l}`).join('\n');
      process.stderr.write(`# dcmsd (pid ${proc.pid}, port ${port}) exited without stop() ` +
        `(${code ?? signal}); stderr tail:\n${tail}\n`);
    });
  } catch (e) {
    server._cleanupSync();
    throw e;
  }
  return server;
}

/** Stops every server still running (after hooks call this). */
export async function stopAll() {
  const errors = [];
  await Promise.all([...running].map((s) => s.stop().catch((e) => errors.push(e))));
  if (errors.length) throw errors[0];
}

after(async () => {
  await stopAll();
});

process.on('exit', () => {
  for (const s of [...running]) s._cleanupSync();
});
