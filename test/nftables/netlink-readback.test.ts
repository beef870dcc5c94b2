/**
 * The read-back codecs of the NFQUEUE rule, without root: the GETCHAIN and GETRULE dump
 * requests field by field, and the parsing of a rule the kernel sends back (a NEWRULE,
 * the same layout as the one tsvs sends) into its xt targets and NFQUEUE settings.
 * test/nftables/kernel.test.ts reads a real kernel's rule back.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  chainGetRequest,
  cstr,
  encodeAttrs,
  nfnlMessage,
  nfqInfoV3,
  nfqueueFromTarget,
  nfqueueRuleBatch,
  parseAttrList,
  parseAttrs,
  parseMessages,
  parseRuleTargets,
  ruleDumpRequest,
  u32be,
  type Attr,
} from '../../src/dataplane/nftables/netlink.js';

const str = (b: Buffer | undefined) => b!.subarray(0, b!.indexOf(0)).toString();

describe('netlink: reading the NFQUEUE rule back', () => {
  test('GETRULE is a dump (NLM_F_REQUEST | NLM_F_DUMP) of one table and chain, in the family asked', () => {
    const [m] = parseMessages(ruleDumpRequest('ip6', 'tsvs', 'nfq', 7));
    assert.equal(m!.type, (10 << 8) | 7);
    assert.equal(m!.flags, 0x1 | 0x300);
    assert.equal(m!.seq, 7);
    assert.equal(m!.payload[0], 10, 'NFPROTO_IPV6');
    const a = parseAttrs(m!.payload, 4);
    assert.equal(str(a.get(1)), 'tsvs', 'NFTA_RULE_TABLE');
    assert.equal(str(a.get(2)), 'nfq', 'NFTA_RULE_CHAIN');
  });

  test('GETCHAIN asks for one chain with an ACK (the dump alone cannot say "no such chain")', () => {
    const [m] = parseMessages(chainGetRequest('ip', 'tsvs', 'nfq', 9));
    assert.equal(m!.type, (10 << 8) | 4);
    assert.equal(m!.flags, 0x1 | 0x4);
    assert.equal(m!.payload[0], 2, 'NFPROTO_IPV4');
    const a = parseAttrs(m!.payload, 4);
    assert.equal(str(a.get(1)), 'tsvs', 'NFTA_CHAIN_TABLE');
    assert.equal(str(a.get(3)), 'nfq', 'NFTA_CHAIN_NAME');
  });

  test('the rule tsvs sends parses back to the same settings, for any queue and either bypass', () => {
    for (const t of [
      { queue: 0, total: 1, bypass: false },
      { queue: 4242, total: 1, bypass: true },
      { queue: 65535, total: 1, bypass: true },
      { queue: 100, total: 4, bypass: false },
    ]) {
      const newrule = parseMessages(nfqueueRuleBatch('ip', 'tsvs', 'nfq', t, 1))[1]!;
      const targets = parseRuleTargets(newrule);
      assert.deepEqual(
        targets!.map((x) => [x.name, x.rev]),
        [['NFQUEUE', 3]],
      );
      assert.deepEqual(nfqueueFromTarget(targets![0]!), t);
    }
  });

  test('targets come back in rule order among other expressions; a message that is not a rule is null', () => {
    const expr = (name: string, data: Attr[]): Attr => ({
      type: 1,
      nested: [
        { type: 1, data: cstr(name) },
        { type: 2, nested: data },
      ],
    });
    const target = (name: string, rev: number, info: Buffer) =>
      expr('target', [
        { type: 1, data: cstr(name) },
        { type: 2, data: u32be(rev) },
        { type: 3, data: info },
      ]);
    const rule = nfnlMessage(10, 6, 0x2, 5, 2, 0, [
      { type: 1, data: cstr('tsvs') },
      { type: 2, data: cstr('nfq') },
      {
        type: 4,
        nested: [
          expr('counter', [{ type: 1, data: Buffer.alloc(8) }]),
          target('MARK', 2, Buffer.alloc(8)),
          target('NFQUEUE', 3, nfqInfoV3({ queue: 7, total: 1, bypass: true })),
          target('NFQUEUE', 1, Buffer.alloc(4)),
        ],
      },
    ]);
    const [m] = parseMessages(rule);
    const targets = parseRuleTargets(m!)!;
    assert.deepEqual(
      targets.map((t) => `${t.name}/${t.rev}`),
      ['MARK/2', 'NFQUEUE/3', 'NFQUEUE/1'],
    );
    // Only NFQUEUE revision 3 with its 6 bytes of info is read as tsvs's rule.
    assert.deepEqual(targets.map(nfqueueFromTarget), [null, { queue: 7, total: 1, bypass: true }, null]);
    assert.equal(nfqueueFromTarget({ name: 'NFQUEUE', rev: 3, info: Buffer.alloc(4) }), null, 'short info');
    assert.equal(parseRuleTargets(parseMessages(ruleDumpRequest('ip', 'tsvs', 'nfq', 1))[0]!), null);
  });

  test('parseAttrList keeps repeated types in order; parseAttrs keeps the last of a type', () => {
    const buf = encodeAttrs(['a', 'b', 'c'].map((x, i) => ({ type: i === 1 ? 2 : 1, data: Buffer.from(x) })));
    assert.deepEqual(
      parseAttrList(buf).map((a) => `${a.type}=${a.data.toString()}`),
      ['1=a', '2=b', '1=c'],
    );
    assert.equal(parseAttrs(buf).get(1)!.toString(), 'c');
    // A truncated attribute ends the list.
    assert.equal(parseAttrList(buf.subarray(0, 20)).length, 2);
  });
});
