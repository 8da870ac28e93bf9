// The ceiling of the HTTP stack on this machine, for bench/http-sign.ts: a Fastify server
// answering the same route with a JSON body of the same size, doing no work at all (no
// token, no vault, no signature, no log line). Plain JavaScript, started by `node` directly.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
const answer = { key_id: 'key_trivialtrivialtrivialtriv', algorithm: 'ed25519', signature: 'A'.repeat(88), encoding: 'raw', request_id: '' };
app.post('/v1/keys/:key/sign', async (req) => ({ ...answer, request_id: req.id }));
await app.listen({ host: '127.0.0.1', port: 0 });
const addr = app.server.address();
process.stdout.write(`listening ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
