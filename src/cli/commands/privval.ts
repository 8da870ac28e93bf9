/** CometBFT watermarks, over the HTTP API: `privval import-state`, `privval status`. */
import type { Command } from 'commander';
import { CustosError } from '../../core/errors.js';
import { clientFrom, out, readInput, withApi } from '../common.js';

export function registerPrivval(program: Command): void {
  const privval = program.command('privval').description('CometBFT remote signing: consensus keys and their double-sign watermarks');
  withApi(
    privval
      .command('import-state')
      .description("Seed a key's double-sign watermark from CometBFT's priv_validator_state.json (never moves it backwards)")
      .requiredOption('--key <key>', 'consensus key id or label (import priv_validator_key.json with `keys import --format cometbft`)')
      .requiredOption('--chain-id <id>', 'chain id')
      .requiredOption('--in <file>', 'priv_validator_state.json'),
  ).action(async (o) => {
    let st: { height?: unknown; round?: unknown; step?: unknown; signature?: unknown; signbytes?: unknown };
    try {
      st = JSON.parse(Buffer.from(readInput(o.in)).toString('utf8'));
    } catch {
      throw new CustosError('bad_request', `${o.in} is not JSON.`);
    }
    if (typeof st.height !== 'string' || typeof st.round !== 'number' || typeof st.step !== 'number') {
      throw new CustosError('bad_request', `${o.in} is not a priv_validator_state.json (height as a string, round and step as numbers).`);
    }
    const body = {
      height: st.height,
      round: st.round,
      step: st.step,
      ...(typeof st.signbytes === 'string' && st.signbytes ? { sign_bytes: st.signbytes } : {}),
      ...(typeof st.signature === 'string' && st.signature ? { signature: st.signature } : {}),
    };
    const r = await clientFrom(o).importWatermark(o.key, o.chainId, body);
    out(o.json ? JSON.stringify(r) : `Watermark of ${o.key} on ${o.chainId}: height ${r.height} round ${r.round} step ${r.step}.`);
  });
  withApi(
    privval
      .command('status')
      .description("Each validator's connection state and last signed height/round/step; or, with --key and --chain-id, a key's watermark")
      .option('--key <key>', 'consensus key')
      .option('--chain-id <id>', 'chain id'),
  ).action(async (o) => {
    const c = clientFrom(o);
    if (o.key || o.chainId) {
      if (!o.key || !o.chainId) throw new CustosError('bad_request', 'Give both --key and --chain-id, or neither.');
      const w = await c.getWatermark(o.key, o.chainId);
      return out(o.json ? JSON.stringify(w) : `${o.key} on ${o.chainId}: last signed height ${w.height} round ${w.round} step ${w.step}${w.signature ? '' : ' (no signature stored)'}`);
    }
    const list = await c.privvalStatus();
    if (o.json) return out(JSON.stringify(list, null, 2));
    if (list.length === 0) return out('No [[privval]] validator is configured.');
    for (const p of list) {
      const last = p.last_signed ? `last signed ${p.last_signed.height}/${p.last_signed.round}/${p.last_signed.step}` : 'nothing signed yet';
      out(`${p.name.padEnd(16)} ${p.chain_id.padEnd(16)} ${p.state.padEnd(11)} ${p.address}  ${last}  (${p.signatures} signatures, ${p.refusals} refusals)`);
    }
  });

}
