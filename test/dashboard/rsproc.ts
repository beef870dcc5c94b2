/** Demo real servers in their own processes (realserver-proc.ts), for tests that stop one. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../daemon/spawn.js';

export interface RsProc {
  name: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startRsProcess(name: string, docroot: string): Promise<RsProc> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'realserver-proc.ts'), name, docroot], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`real server ${name} exited with ${code}`)));
  });
  return {
    name,
    port,
    proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
