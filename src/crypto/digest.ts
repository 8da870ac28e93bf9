/**
 * The SHA-256 of bytes, or of a string as UTF-8, in hex: how audit entries, logs and row
 * names name a message, a key, a document or a user name without holding it.
 */
import { createHash } from 'node:crypto';

export const sha256hex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
