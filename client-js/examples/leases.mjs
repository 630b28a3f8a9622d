// leases: two runs on one session, three ways (a scripted model; no key needed)
import { Agent, Usage, run, setTracingDisabled } from '@openai/agents';
import { ProblemError, RemoteSession } from 'session-memory-client';

setTracingDisabled(true);

// A model that takes a while to answer, as a model does; `seen` counts the items each call was sent.
const seen = [];
const slowModel = {
  async getResponse(request) {
    seen.push(request.input.length);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const said = request.input.filter((item) => item.role === 'user').at(-1).content;
    const content = [{ type: 'output_text', text: `Hello, ${said}` }];
    return { usage: new Usage(), output: [{ type: 'message', role: 'assistant', status: 'completed', content }] };
  },
  async *getStreamedResponse() {
    throw new Error('this example does not stream');
  },
};

async function turn(session, text, waitMs) {
  const agent = new Agent({ name: 'assistant', model: slowModel });
  if (waitMs === undefined) return run(agent, text, { session }); // no lease: the runs interleave
  return session.runLease({ ttlMs: 30_000, waitMs }, () => run(agent, text, { session }));
}

const baseUrl = process.env.SESSION_MEMORY_BASE_URL ?? 'http://127.0.0.1:8000';
for (const [way, waitMs] of [['interleave', undefined], ['wait', 10_000], ['reject', 0]]) {
  const session = new RemoteSession(`two-runs-js-${way}`, { baseUrl });
  await session.clearSession();
  seen.length = 0;
  const outcomes = await Promise.allSettled([turn(session, 'Ada', waitMs), turn(session, 'Bob', waitMs)]);
  const refused = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof ProblemError).length;
  const roles = (await session.getItems()).map((item) => item.role).join(' ');
  console.log(`${way}: ${roles} (${refused} refused; items each model call saw: ${seen.join(', ')})`);
}
// interleave: user assistant user assistant (0 refused; items each model call saw: 1, 1)
// wait: user assistant user assistant (0 refused; items each model call saw: 1, 3)
// reject: user assistant (1 refused; items each model call saw: 1)
