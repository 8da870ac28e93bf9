/** Moved to `crypto/protobuf/writer.ts` (the vault needs it too); re-exported for existing imports. */
export * from '../../crypto/protobuf/writer.js';
