/** Small file-system steps several layers share. */
import { closeSync, fsyncSync, openSync } from 'node:fs';

/** Makes a directory's entries durable: a file's own fsync does not cover its name after a create or a rename. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
