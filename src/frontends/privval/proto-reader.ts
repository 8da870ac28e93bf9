/** Moved to `crypto/protobuf/reader.ts` (the vault needs it too); re-exported for existing imports. */
export * from '../../crypto/protobuf/reader.js';
