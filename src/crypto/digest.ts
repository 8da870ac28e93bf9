/** The SHA-256 of bytes, in hex: how audit entries and logs name a message, a key or a signature without holding it. */
import { createHash } from 'node:crypto';

export const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
