/**
 * `custos privval setup`: move a validator from CometBFT's FilePV or from tmkms to a running
 * Custos in one command, with no restart:
 *   1. read the old signer's key and state files (and, for tmkms, its tmkms.toml);
 *   2. import the consensus key (purpose consensus) and create the SecretConnection identity;
 *   3. import the watermark, checked by the vault (a signature that is not the key's over the
 *      state's own position is refused), never moving it backwards;
 *   4. append the [[privval]] entry to custos.toml (validated before the file is replaced);
 *   5. ask the daemon to reload (POST /v1/reload), which starts only the new connector;
 *   6. print the lines to set on the node.
 * Every step that already happened (a rerun after a failure) is recognised and kept: a key with
 * the label and the same public key is reused, a watermark already ahead stays.
 *
 * The old signer must be stopped first, or its last signatures are not in the imported state:
 * the command asks (or wants --yes when not on a terminal).
 */
import { Option, type Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { join, resolve } from 'node:path';
import { CustosError, isCustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import type { CustosClient, KeyInfo } from '../../client/client.js';
import { PRIVVAL_VERSIONS, type PrivvalVersion } from '../../core/privval-version.js';
import { parseValidatorState, type WatermarkImport } from '../../migrate/cometbft-state.js';
import { readTmkmsConfig, softsignSeed } from '../../migrate/tmkms.js';
import { parsePrivvalAddress } from '../../frontends/privval/address.js';
import { clientFrom, out, readInput, withApi } from '../common.js';

interface SetupOptions {
  name?: string;
  chainId?: string;
  address?: string;
  dialect?: PrivvalVersion;
  filepvKey?: string;
  filepvState?: string;
  tmkmsConfig?: string;
  tmkmsDir?: string;
  config?: string;
  dataDir?: string;
  keyLabel?: string;
  identityLabel?: string;
  reload: boolean;
  yes?: boolean;
  json?: boolean;
  neverSigned?: boolean;
  addr?: string;
  token?: string;
  tokenFile?: string;
}

export function registerPrivvalSetup(privval: Command): void {
  withApi(
    privval
      .command('setup')
      .description('Move a validator from FilePV (priv_validator_key.json + state) or tmkms (tmkms.toml) to this vault: imports the key and watermark, creates the connection identity, adds the [[privval]] entry, reloads the daemon')
      .option('--filepv-key <file>', "CometBFT's priv_validator_key.json")
      .option('--filepv-state <file>', "CometBFT's priv_validator_state.json (data/ directory of the node)")
      .option('--tmkms-config <file>', "tmkms's tmkms.toml (its softsign key and state files are read from it)")
      .option('--tmkms-dir <dir>', 'the directory tmkms ran in: relative paths in tmkms.toml are read from it (default: the directory of tmkms.toml)')
      .option('--chain-id <id>', 'the chain (with --tmkms-config: which [[validator]], when it has several)')
      .option('--name <name>', 'name of the [[privval]] entry (default: the chain id)')
      .option('--address <url>', "the node's priv_validator_laddr: tcp://host:port or unix:///path (from tmkms.toml: its addr)")
      .addOption(new Option('--dialect <version>', "the node's CometBFT version line (default v0.38; tmkms's protocol_version is not the node's version)").choices([...PRIVVAL_VERSIONS]))
      .option('--key-label <label>', 'label of the consensus key in the vault (default: <name>-consensus)')
      .option('--identity-label <label>', 'label of the SecretConnection identity key (default: <name>-identity)')
      .option('--data-dir <dir>', "the vault's data directory, whose custos.toml gets the entry")
      .option('--config <file>', 'the custos.toml the daemon was started with (default: custos.toml in --data-dir)')
      .option('--no-reload', 'only write the entry; the daemon picks it up at its next reload (kill -HUP) or start')
      .option('--never-signed', 'FilePV without a state file: the key has never signed (else give --filepv-state)')
      .option('-y, --yes', 'the old signer is stopped (required when not asked on a terminal)'),
  ).action(async (o: SetupOptions) => {
    const began = Date.now();
    const tty = !!process.stdin.isTTY && !o.json;
    const rl = tty ? createInterface({ input: process.stdin, output: process.stderr, terminal: false }) : undefined;
    const ask = async (what: string, fallback?: string): Promise<string | undefined> => {
      if (!rl) return fallback;
      const a = (await rl.question(`${what}${fallback ? ` [${fallback}]` : ''}: `)).trim();
      return a || fallback;
    };
    try {
      await run(o, ask, began, tty);
    } finally {
      rl?.close();
    }
  });
}

async function run(o: SetupOptions, ask: (what: string, fallback?: string) => Promise<string | undefined>, began: number, tty: boolean): Promise<void> {
  const say = (s: string) => {
    if (!o.json) out(s);
  };
  // --- What we move from -------------------------------------------------------------------
  if (!o.filepvKey && !o.tmkmsConfig) {
    const from = await ask('Move from FilePV (priv_validator_key.json) or tmkms (tmkms.toml)? filepv/tmkms');
    if (from === 'tmkms') o.tmkmsConfig = await ask('Path of tmkms.toml');
    else if (from === 'filepv') {
      o.filepvKey = await ask('Path of priv_validator_key.json', 'config/priv_validator_key.json');
      o.filepvState = await ask('Path of priv_validator_state.json', 'data/priv_validator_state.json');
    }
  }
  if (!!o.filepvKey === !!o.tmkmsConfig) throw new CustosError('bad_request', 'Give --filepv-key FILE (with --filepv-state FILE) or --tmkms-config FILE, one of them.');
  // Where the key and the state are; nothing secret is read before the old signer is stopped.
  const origin: 'filepv' | 'tmkms' = o.tmkmsConfig ? 'tmkms' : 'filepv';
  let keyFile: string;
  let keyFormat: 'json' | 'base64' = 'json';
  let stateFile: string | undefined;
  if (o.tmkmsConfig) {
    const vs = readTmkmsConfig(o.tmkmsConfig, o.chainId, o.tmkmsDir);
    if (vs.length > 1) {
      const chains = [...new Set(vs.map((v) => v.chainId))];
      throw new CustosError('bad_request', chains.length > 1 ? `${o.tmkmsConfig} has validators for ${chains.join(', ')}: give --chain-id for one (run setup once per chain).` : `${o.tmkmsConfig} has ${vs.length} [[validator]] entries for ${chains[0]} (one key, several nodes): run setup once per node, each with its own --name and --address.`);
    }
    const v = vs[0]!;
    o.chainId ??= v.chainId;
    o.dialect ??= 'v0.38'; // tmkms's protocol_version is its own encoding, not the node's version (migrate/tmkms.ts)
    // CometBFT's privval listener has a fresh identity at every start, so tmkms's node id pin
    // (tcp://<id>@host:port) cannot be checked: it is dropped here and said so.
    const ep = parsePrivvalAddress(v.addr);
    if (!o.address) {
      o.address = ep.kind === 'tcp' ? `tcp://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}` : v.addr;
      if (ep.kind === 'tcp' && ep.nodeId) say(`note: tmkms pins node ${ep.nodeId}; the node's privval listener takes a new identity at every start, so Custos does not pin it (set node_key in the entry if your node keeps one).`);
    }
    stateFile = v.stateFile;
    keyFile = v.keyFile;
    keyFormat = v.keyFormat;
    say(`tmkms: the key ${keyFile}, the state ${stateFile}${o.tmkmsDir ? '' : ' (relative paths read from the directory of tmkms.toml; --tmkms-dir if tmkms ran elsewhere)'}`);
  } else {
    keyFile = o.filepvKey!;
    stateFile = o.filepvState;
    if (stateFile === '-') throw new CustosError('bad_request', '--filepv-state must be the file itself (not -): it is read again just before the import to make sure the old signer has stopped.');
    // Without the state, Custos would sign again what FilePV signed last: say so, explicitly.
    if (!stateFile && !o.neverSigned) throw new CustosError('bad_request', "Give --filepv-state FILE (the node's data/priv_validator_state.json), or --never-signed for a validator key that has never signed: without the state Custos cannot know what the key signed last.");
  }
  o.chainId ??= await ask('Chain id');
  if (!o.chainId) throw new CustosError('bad_request', 'Give --chain-id.');
  o.address ??= await ask("The node's priv_validator_laddr (tcp://host:port or unix:///path)", 'tcp://127.0.0.1:26659');
  if (!o.address) throw new CustosError('bad_request', "Give --address: the node's priv_validator_laddr, e.g. tcp://127.0.0.1:26659.");
  parsePrivvalAddress(o.address);
  o.name ??= await ask('Name of the entry', sanitize(o.chainId));
  o.name ??= sanitize(o.chainId);
  o.dialect ??= ((await ask("The node's CometBFT version line: v0.34, v0.37, v0.38 (also v0.39, v0.40) or v1", 'v0.38')) as PrivvalVersion | undefined) ?? 'v0.38';
  if (!PRIVVAL_VERSIONS.includes(o.dialect)) throw new CustosError('bad_request', `--dialect must be one of ${PRIVVAL_VERSIONS.join(', ')}.`);
  if (!o.config && !o.dataDir) o.dataDir = await ask("The vault's data directory (its custos.toml gets the entry)");
  if (!o.config && !o.dataDir) throw new CustosError('bad_request', 'Give --data-dir DIR (or --config FILE): the custos.toml the daemon reads.');
  const configPath = resolve(o.config ?? join(o.dataDir!, 'custos.toml'));
  const keyLabel = o.keyLabel ?? `${o.name}-consensus`;
  const identityLabel = o.identityLabel ?? `${o.name}-identity`;
  const tcp = o.address.startsWith('tcp://');

  // Refuse before anything is imported if the entry could not be added.
  const { addPrivvalEntry, checkPrivvalEntry } = await import('../../migrate/config-file.js');
  const entryIsNew = checkPrivvalEntry(configPath, { name: o.name, address: o.address, chainId: o.chainId, key: keyLabel });
  if (!entryIsNew) say(`[[privval]] "${o.name}" is already in ${configPath} as this command would write it: kept (a rerun finishes the rest).`);

  // --- The old signer must be stopped before its state is read -------------------------------
  if (!o.yes) {
    const old = origin === 'tmkms' ? 'tmkms' : 'the node (FilePV signs inside it)';
    if (!tty) throw new CustosError('bad_request', `Stop ${old} first, so that its last signature is in the state file, then run this again with --yes. Never let two signers hold one key.`);
    const a = await ask(`Is ${old} stopped, and will it stay stopped? yes/no`, 'no');
    if (a !== 'yes' && a !== 'y') throw new CustosError('bad_request', `Nothing was changed. Stop ${old} first, then run this again.`);
  }

  // --- The key and the state ---------------------------------------------------------------
  const secret = await readConsensusKey(keyFile, keyFormat);
  let stateBytes: Uint8Array | undefined;
  let state: WatermarkImport | undefined;
  if (stateFile) {
    stateBytes = readInput(stateFile);
    state = parseValidatorState(stateBytes, stateFile, origin).state;
  }

  // --- Into the vault ----------------------------------------------------------------------
  const client = clientFrom(o);
  const key = await importOrReuse(client, keyLabel, secret, say);
  secret.material = '';
  let identity: KeyInfo | undefined;
  if (tcp) identity = await createOrReuseIdentity(client, identityLabel, say);
  let watermark: { height: string; round: number; step: number } | undefined;
  if (state) {
    // The file must not have moved while we worked: if it did, the old signer is still signing.
    const again = readInput(stateFile!);
    if (Buffer.compare(Buffer.from(again), Buffer.from(stateBytes!)) !== 0) {
      throw new CustosError('policy_denied', `${stateFile} changed while setup ran: the old signer is still signing. Stop it for good, then run this again (the key is imported; the watermark and the entry are not).`, { tag: 'double_sign' });
    }
    try {
      watermark = await client.importWatermark(key.id, o.chainId, state);
    } catch (e) {
      // The vault already holds a later position for this key (a rerun, or the key signed
      // here before): the later one stays, which is the safe side.
      if (isCustosError(e) && e.code === 'policy_denied' && e.tag === 'double_sign') {
        const w = await client.getWatermark(key.id, o.chainId);
        say(`the vault's watermark of ${keyLabel} on ${o.chainId} (height ${w.height} round ${w.round} step ${w.step}) is ahead of ${stateFile}: kept`);
        state = undefined;
        watermark = { height: w.height, round: w.round, step: w.step };
      } else if (isCustosError(e) && e.tag === 'double_sign') throw e;
      else throw isCustosError(e) ? new CustosError(e.code, `The watermark from ${stateFile} was refused: ${e.message} The key is imported; nothing else changed.`, e.tag ? { tag: e.tag } : undefined) : e;
    }
    if (state) say(`watermark of ${keyLabel} on ${o.chainId}: height ${watermark.height} round ${watermark.round} step ${watermark.step}${origin === 'tmkms' ? ' (tmkms steps 0/1/2 read as 1/2/3)' : ''}`);
  }

  // --- custos.toml, then the daemon --------------------------------------------------------
  if (entryIsNew) addPrivvalEntry(configPath, {
    name: o.name,
    chainId: o.chainId,
    address: o.address,
    key: keyLabel,
    ...(identity ? { identityKey: identityLabel } : {}),
    dialect: o.dialect,
    comment: `Added by custos privval setup on ${new Date().toISOString().slice(0, 10)}, from ${origin === 'tmkms' ? `tmkms (${o.tmkmsConfig})` : `FilePV (${o.filepvKey})`}.`,
  });
  if (entryIsNew) say(`added [[privval]] "${o.name}" to ${configPath}`);
  let reloaded: 'started' | 'not-picked-up' | 'skipped' = 'skipped';
  if (o.reload) {
    const r = await client.reload();
    reloaded = r.privval === null || [...r.privval.started, ...r.privval.restarted, ...r.privval.unchanged].includes(o.name) ? 'started' : 'not-picked-up';
    if (reloaded === 'started') say(r.applied ? `the daemon reloaded: connector "${o.name}" is dialling ${o.address}` : `the daemon reloaded; connector "${o.name}" starts when the vault is unsealed`);
    else say(`warning: the daemon reloaded but did not start "${o.name}": is it serving ${configPath}? (custos serve --config)`);
  }

  const seconds = (Date.now() - began) / 1000;
  if (o.json) {
    out(JSON.stringify({ name: o.name, chain_id: o.chainId, address: o.address, dialect: o.dialect, key: { id: key.id, label: keyLabel }, identity: identity ? { id: identity.id, label: identityLabel } : null, watermark: watermark ?? null, config: configPath, reloaded, seconds }, null, 2));
    return;
  }
  out('');
  out(nodeInstructions(origin, o.address, o.name));
}

/** The consensus key as the import API takes it, with its public key to recognise a rerun. */
async function readConsensusKey(file: string, format: 'json' | 'base64'): Promise<{ format: 'cometbft' | 'raw'; material: string; publicKey: Uint8Array; algorithm?: 'ed25519' }> {
  const bytes = readInput(file);
  try {
    if (format === 'json') {
      let pub: unknown;
      try {
        pub = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { pub_key?: { value?: unknown } } | null)?.pub_key?.value;
      } catch {
        // Never the parser's message: it quotes the text around the error, the key included.
        throw new CustosError('bad_request', `${file} is not JSON: expected a CometBFT priv_validator_key.json.`);
      }
      if (typeof pub !== 'string') throw new CustosError('bad_request', `${file} has no pub_key.value: expected a CometBFT priv_validator_key.json.`);
      return { format: 'cometbft', material: Buffer.from(bytes).toString('utf8'), publicKey: new Uint8Array(Buffer.from(pub, 'base64')) };
    }
    const { ed25519 } = await import('@noble/curves/ed25519.js');
    const seed = softsignSeed(bytes, file);
    try {
      return { format: 'raw', algorithm: 'ed25519', material: Buffer.from(seed.buffer, seed.byteOffset, seed.byteLength).toString('base64'), publicKey: ed25519.getPublicKey(seed) };
    } finally {
      wipe(seed);
    }
  } finally {
    wipe(bytes);
  }
}

function sanitize(chainId: string): string {
  const s = chainId.replace(/[^A-Za-z0-9_-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 32);
  return s || 'validator';
}

async function importOrReuse(client: CustosClient, label: string, s: { format: 'cometbft' | 'raw'; material: string; publicKey: Uint8Array; algorithm?: 'ed25519' }, say: (s: string) => void): Promise<KeyInfo> {
  try {
    const k = await client.importKey({ label, format: s.format, material: s.material, exportable: false, purpose: 'consensus', ...(s.algorithm ? { algorithm: s.algorithm } : {}) });
    say(`imported the consensus key as ${label} (${k.algorithm}, ${k.id}), purpose consensus, not exportable`);
    return k;
  } catch (e) {
    if (!(isCustosError(e) && e.code === 'label_taken')) throw e;
    const k = await client.getKey(label);
    if (k.public_key.raw_hex !== Buffer.from(s.publicKey).toString('hex')) {
      throw new CustosError('label_taken', `The vault already has a key labelled ${label} with another public key; pick another --key-label.`);
    }
    if (k.purpose !== 'consensus') throw new CustosError('label_taken', `The vault's ${label} is this validator's key but its purpose is ${k.purpose ?? 'legacy'}, not consensus; set it with custos keys set-purpose ${label} consensus.`);
    say(`the consensus key is already in the vault as ${label} (${k.id}): kept`);
    return k;
  }
}

async function createOrReuseIdentity(client: CustosClient, label: string, say: (s: string) => void): Promise<KeyInfo> {
  try {
    const k = await client.createKey({ label, algorithm: 'ed25519', purpose: 'general' });
    say(`created the SecretConnection identity ${label} (${k.id}); it never leaves the vault`);
    return k;
  } catch (e) {
    if (!(isCustosError(e) && e.code === 'label_taken')) throw e;
    const k = await client.getKey(label);
    if (k.algorithm !== 'ed25519') throw new CustosError('label_taken', `The vault's ${label} is ${k.algorithm}, not an ed25519 identity; pick another --identity-label.`);
    say(`the identity ${label} is already in the vault (${k.id}): kept`);
    return k;
  }
}

/** What to do on the node, as lines to copy. */
function nodeInstructions(origin: 'filepv' | 'tmkms', address: string, name: string): string {
  const ep = parsePrivvalAddress(address);
  const laddr = ep.kind === 'tcp' ? `tcp://${ep.host === '127.0.0.1' || ep.host === 'localhost' ? '127.0.0.1' : '0.0.0.0'}:${ep.port}` : address;
  const lines =
    origin === 'tmkms'
      ? [
          'On the CometBFT node nothing changes: its priv_validator_laddr already points here.',
          `  priv_validator_laddr = "${laddr}"        # config/config.toml, as it is`,
          'Keep tmkms stopped for good (e.g. systemctl disable --now tmkms): one signer per key.',
        ]
      : [
          'On the CometBFT node, in config/config.toml:',
          `  priv_validator_laddr = "${laddr}"`,
          ...(ep.kind === 'tcp' && laddr.includes('0.0.0.0') ? ['  (listen on the private interface Custos reaches, not the public one)'] : []),
          'then restart the node. It signs through Custos from then on; remove the key from the node host:',
          '  config/priv_validator_key.json     (move it to an offline backup; the vault holds it now)',
          '  data/priv_validator_state.json     (no longer read once priv_validator_laddr is set)',
        ];
  return [...lines, '', `Watch it: custos privval status   (the "${name}" row turns "connected", then counts signatures)`].join('\n');
}
