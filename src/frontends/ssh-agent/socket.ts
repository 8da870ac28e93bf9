/**
 * Where the agent's Unix socket may live. Whoever can write to the socket's directory can
 * unlink the socket and put their own in its place, and every client that follows
 * SSH_AUTH_SOCK then hands its logins to them; so the directory must belong to the vault's
 * user and be writable by nobody else. An existing directory is checked, never changed: it
 * may be shared (/tmp, /run) and its mode is its owner's business, not the agent's (a root
 * daemon told to use /run/x.sock must not turn /run into 0700). A missing one is created
 * 0700. OpenSSH's ssh-agent sidesteps the question by binding in a fresh mkdtemp directory.
 */
import { connect } from 'node:net';
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { CustosError } from '../../core/errors.js';

/**
 * Makes `dir` if it is missing (0700), else checks that it is a real directory owned by this
 * process's user and not writable by group or others. Throws `config_invalid` with what is
 * wrong and what to run; `suggestion` names a private directory to propose instead.
 */
export function prepareSocketDir(dir: string, suggestion: string): void {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const instead = `choose a private directory such as ${suggestion} for the agent socket`;
  // lstat: the directory itself, not what a symlink points to (whoever owns the link's
  // directory could repoint it).
  const st = lstatSync(dir);
  if (st.isSymbolicLink()) throw new CustosError('config_invalid', `The agent socket directory ${dir} is a symbolic link; give the directory it points to, or ${instead}.`);
  if (!st.isDirectory()) throw new CustosError('config_invalid', `The agent socket directory ${dir} exists and is not a directory; ${instead}.`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  const user = userName(uid);
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  const problems: string[] = [];
  const fixes: string[] = [];
  if (st.uid !== uid) {
    problems.push(`belongs to uid ${st.uid}, not to ${user} (uid ${uid}) who runs the vault`);
    fixes.push(`chown ${user} ${dir}`);
  }
  if ((st.mode & 0o022) !== 0) {
    const who = (st.mode & 0o022) === 0o022 ? 'group and others' : st.mode & 0o020 ? 'its group' : 'others';
    problems.push(`is writable by ${who} (mode ${mode})`);
    fixes.push(`chmod 700 ${dir}`);
  }
  if (problems.length === 0) return;
  const why = `The agent socket directory ${dir} ${problems.join(' and ')}: whoever can write there can replace the socket.`;
  // A sticky world-writable directory is shared by design (/tmp, /var/tmp): changing its
  // mode would break every other user of it, so no chmod is proposed for one.
  if ((st.mode & 0o1000) !== 0 && (st.mode & 0o002) !== 0) throw new CustosError('config_invalid', `${why} It is a shared directory (sticky bit set): leave its mode alone and ${instead}.`);
  throw new CustosError('config_invalid', `${why} If ${dir} is meant for this vault alone, run \`${fixes.join(' && ')}\`; otherwise ${instead}.`);
}

function userName(uid: number): string {
  try {
    return userInfo().username;
  } catch {
    // No passwd entry (a container's arbitrary uid): chown takes the number too.
    return String(uid);
  }
}

/** `refused` (nobody listens: a stale socket file), `live`, or `unknown` (e.g. a full backlog). */
export function probe(path: string): Promise<'live' | 'refused' | 'unknown'> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve('live');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
  });
}
