// Purchases over REST (spec 5.12, 10, 12 item 20): POST bits/transactions and POST
// coins/purchase.
//
// Sandbox: MEDKit's own dev purchase flow (sdk.purchase with MEDKIT_PURCHASABLE_ITEMS and
// transactionsEnabled: a receipt whose signature matches nothing) is approved with 201 and
// recorded once. Production: a receipt signed with the extension secret is accepted once and a
// replay is refused with 409; a bad signature, another extension's domainId, a wrong topic or an
// expired receipt is refused and leaves nothing behind (the same transactionId is accepted
// afterwards, and no coins were credited). Coins: bits purchases credit their amount, and
// coins/purchase spends it on a SKU priced in the channel config. What is recorded is read back
// through its effects (replay refusals, coin balances); the GameLink reads (get/validate/refund
// transaction) are unit-tested in C++ (transaction_service_test.cc).
import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {signJwt} from './lib/server.mjs';
import {randomSecret, expectStatus, uid, PROD_CLIENT, startBothStages} from './lib/roles.mjs';
import {openUser, closeAllUsers} from './lib/medkit_client.mjs';

const SECRET = randomSecret();
const HS256 = {alg: 'HS256', typ: 'JWT'};
const now = () => Math.floor(Date.now() / 1000);
const plain = (v) => JSON.parse(JSON.stringify(v));
let sb, prod, SB, PR;

let stages;
before(async () => {
  stages = await startBothStages(SECRET);
  ({sb, prod, SB, PR} = stages);
});

after(async () => {
  closeAllUsers();
  await stages?.stop();
});

// The body MEDKit forwards from Twitch's onTransactionComplete.
function txBody(receipt, {id, sku = 'muxy-bits-50', amount = 50, user = 'v1'} = {}) {
  return {
    transactionId: id,
    product: {sku, displayName: 'Fifty', cost: {amount, type: 'bits'}, inDevelopment: false},
    userId: user, displayName: 'Viewer', initiator: 'current_user', transactionReceipt: receipt,
  };
}

// A Twitch receipt's claims.
function receiptClaims({id, sku = 'muxy-bits-50', amount = 50, user = 'v1', clientId = PROD_CLIENT,
                        topic = 'bits_transaction_receipt', exp = now() + 600} = {}) {
  return {
    exp, topic,
    data: {transactionId: id, time: '2026-12-04 03:00:00.000000000 +0000 UTC', userId: user,
           product: {domainId: `twitch.ext.${clientId}`, sku, displayName: 'Fifty',
                     cost: {amount, type: 'bits'}}},
  };
}

// Sets the channel config's skus (as the channel's broadcaster).
async function priceSkus(f, channel, skus) {
  expectStatus(await f.req('POST', 'config/channel', f.as('broadcaster', {channel}), {body: {skus}}), 200, {});
}

describe('sandbox: MEDKit dev purchases', () => {
  test('sdk.purchase() → POST bits/transactions → 201 {}, recorded once', async () => {
    const ch = `7${Date.now() % 1e8}`;
    const userID = `5${crypto.randomInt(1e8)}`;
    const items = [{sku: 'muxy-bits-50', displayName: 'Fifty', cost: {amount: 50, type: 'bits'}}];
    const u = await openUser(sb.base, {role: 'viewer', channelID: ch, userID,
                                       transactionsEnabled: true, purchasableItems: items});
    try {
      // Record the status of every XHR the client makes.
      const statuses = [];
      const XHR = u.window.XMLHttpRequest.prototype;
      const open = XHR.open, send = XHR.send;
      XHR.open = function (method, url, ...rest) { this.__url = url; return open.call(this, method, url, ...rest); };
      XHR.send = function (...args) {
        this.addEventListener('loadend', () => statuses.push({url: this.__url, status: this.status}));
        return send.apply(this, args);
      };
      const done = new Promise((resolve) => u.sdk.onUserPurchase((tx, promise) => resolve({tx, promise})));
      u.sdk.purchase('muxy-bits-50');
      const {tx, promise} = await done;
      assert.deepEqual(plain(await promise), {});
      const sent = statuses.filter((s) => /\/v1\/e\/bits\/transactions$/.test(s.url));
      assert.deepEqual(sent.map((s) => s.status), [201]);
      assert.match(tx.transactionId, /^test:\d+$/);

      // Recorded: the same transaction again is a replay.
      const viewer = SB.as('viewer', {channel: ch, user: userID});
      const replay = await SB.req('POST', 'bits/transactions', viewer, {body: plain(tx)});
      expectStatus(replay, 409, {reason: 'transaction already recorded',
                                 info: `transactionId ${tx.transactionId} was recorded before`});
      // Recorded once: 50 coins were credited, exactly once.
      await priceSkus(SB, ch, {bomb: {price: 50}});
      expectStatus(await SB.req('POST', 'coins/purchase', viewer, {body: {sku: 'bomb', price: 50}}), 200, {});
      expectStatus(await SB.req('POST', 'coins/purchase', viewer, {body: {sku: 'bomb', price: 50}}), 400,
                   {reason: 'Not enough coins', info: 'balance 0, price 50'});
    } finally {
      u.close();
    }
  });

  test('a receipt that is not a JWT is approved from the body; still once per transactionId', async () => {
    const ch = uid('ch');
    const viewer = SB.as('viewer', {channel: ch, user: 'v1'});
    const body = txBody('transaction-receipt', {id: uid('dev-')});
    expectStatus(await SB.req('POST', 'bits/transactions', viewer, {body}), 201, {});
    expectStatus(await SB.req('POST', 'bits/transactions', viewer, {body}), 409);
    // Double-encoded (DOCS example: JSON.stringify(tx) passed to signedRequest).
    const twice = txBody('transaction-receipt', {id: uid('dev-')});
    expectStatus(await SB.req('POST', 'bits/transactions', viewer, {rawBody: JSON.stringify(JSON.stringify(twice))}), 201, {});
    expectStatus(await SB.req('POST', 'bits/transactions', viewer, {body: twice}), 409);
  });

  test('malformed bodies → 400 and nothing recorded', async () => {
    const ch = uid('ch');
    const viewer = SB.as('viewer', {channel: ch, user: 'v1'});
    const id = uid('bad-');
    const bad = [
      {transactionId: id},                                          // no product
      {transactionId: id, product: {displayName: 'x'}},             // no sku
      {product: {sku: 's', cost: {amount: 1, type: 'bits'}}},       // no transactionId
      {transactionId: id, product: {sku: 's', cost: {amount: -1, type: 'bits'}}},
      {transactionId: id, product: {sku: 's', cost: {amount: 'lots', type: 'bits'}}},
    ];
    for (const body of bad) {
      const r = await SB.req('POST', 'bits/transactions', viewer, {body});
      expectStatus(r, 400, undefined, JSON.stringify(body));
      assert.equal(typeof r.json.reason, 'string');
    }
    for (const raw of ['[1]', '"text"', '', '{bad']) {
      expectStatus(await SB.req('POST', 'bits/transactions', viewer, {rawBody: raw}), 400, undefined, raw);
    }
    expectStatus(await sb.request('POST', 'bits/transactions', {body: txBody('x', {id})}), 401);
    // The refused id is still free.
    expectStatus(await SB.req('POST', 'bits/transactions', viewer, {body: txBody('x', {id})}), 201, {});
  });
});

describe('production: signed receipts', () => {
  const key = Buffer.from(SECRET, 'base64');
  const sign = (claims, k = key) => signJwt(HS256, claims, k);

  test('a receipt signed with the extension secret is accepted once; a replay → 409', async () => {
    const ch = uid('ch');
    const viewer = PR.as('viewer', {channel: ch, user: 'v1'});
    const id = uid('tx-');
    const body = txBody(sign(receiptClaims({id})), {id});
    expectStatus(await PR.req('POST', 'bits/transactions', viewer, {body}), 201, {});
    expectStatus(await PR.req('POST', 'bits/transactions', viewer, {body}), 409,
                 {reason: 'transaction already recorded', info: `transactionId ${id} was recorded before`});
    // Also from another viewer and channel: the transactionId is unique per extension.
    const other = PR.as('viewer', {channel: uid('ch'), user: 'v2'});
    expectStatus(await PR.req('POST', 'bits/transactions', other, {body}), 409);
    // Any role may forward a purchase (the purchasing viewer's token normally).
    const id2 = uid('tx-');
    const b = PR.as('broadcaster', {channel: ch});
    expectStatus(await PR.req('POST', 'bits/transactions', b, {body: txBody(sign(receiptClaims({id: id2})), {id: id2})}), 201, {});
  });

  test('bad receipts are refused and leave nothing behind', async () => {
    const ch = uid('ch');
    const viewer = PR.as('viewer', {channel: ch, user: 'v1'});
    const id = uid('tx-');
    const cases = [
      ['bad signature', sign(receiptClaims({id}), crypto.randomBytes(32)), 400,
       {reason: 'Invalid transaction receipt', info: 'invalid token signature'}],
      ['another extension', sign(receiptClaims({id, clientId: 'someotherext'})), 403,
       {reason: 'transaction receipt is for another extension', info: `product.domainId must be twitch.ext.${PROD_CLIENT}`}],
      ['wrong topic', sign(receiptClaims({id, topic: 'not_a_receipt'})), 400,
       {reason: 'Invalid transaction receipt', info: 'topic is not bits_transaction_receipt'}],
      ['expired', sign(receiptClaims({id, exp: now() - 3600})), 400,
       {reason: 'Invalid transaction receipt', info: 'token expired'}],
      ['no receipt', undefined, 400, {reason: 'transactionReceipt required'}],
      ['not a JWT', 'transaction-receipt', 400, {reason: 'Invalid transaction receipt', info: 'malformed token'}],
    ];
    // MEDKit's dev receipt: btoa segments and a fixed signature.
    const dev = `${btoa(JSON.stringify(HS256))}.${btoa(JSON.stringify(receiptClaims({id})))}.DK02m0j0HQMKsPeFIrAuVdFh5X8f0hknjEKHAjGt6B0`;
    cases.push(['MEDKit dev receipt', dev, 400, undefined]);
    for (const [what, receipt, status, expected] of cases) {
      const body = txBody(receipt, {id});
      if (receipt === undefined) delete body.transactionReceipt;
      const r = await PR.req('POST', 'bits/transactions', viewer, {body});
      expectStatus(r, status, expected, what);
    }
    // Nothing was recorded: no coins, and the id is accepted with a good receipt.
    await priceSkus(PR, ch, {bomb: {price: 50}});
    expectStatus(await PR.req('POST', 'coins/purchase', viewer, {body: {sku: 'bomb', price: 50}}), 400,
                 {reason: 'Not enough coins', info: 'balance 0, price 50'});
    expectStatus(await PR.req('POST', 'bits/transactions', viewer, {body: txBody(sign(receiptClaims({id})), {id})}), 201, {});
    expectStatus(await PR.req('POST', 'coins/purchase', viewer, {body: {sku: 'bomb', price: 50}}), 200, {});
  });
});

describe('coins', () => {
  const key = Buffer.from(SECRET, 'base64');
  const buyBits = async (viewer, amount) => {
    const id = uid('tx-');
    const body = txBody(signJwt(HS256, receiptClaims({id, amount, sku: `muxy-bits-${amount}`}), key), {id, amount});
    expectStatus(await PR.req('POST', 'bits/transactions', viewer, {body}), 201, {});
  };

  test('bits credit coins per viewer and channel; coins/purchase spends them on configured skus', async () => {
    const ch = uid('ch');
    const v1 = PR.as('viewer', {channel: ch, user: 'v1'});
    const v2 = PR.as('viewer', {channel: ch, user: 'v2'});
    const elsewhere = PR.as('viewer', {channel: uid('ch'), user: 'v1'});
    await priceSkus(PR, ch, {bomb: {price: 30}, shield: {price: 100}, free: {price: 0}, broken: {}});
    await buyBits(v1, 50);
    await buyBits(v1, 25);
    const buy = (who, sku, price) => PR.req('POST', 'coins/purchase', who, {body: {sku, price}});
    expectStatus(await buy(v1, 'shield', 100), 400, {reason: 'Not enough coins', info: 'balance 75, price 100'});
    expectStatus(await buy(v1, 'bomb', 30), 200, {});
    expectStatus(await buy(v1, 'bomb', 30), 200, {});
    expectStatus(await buy(v1, 'bomb', 30), 400, {reason: 'Not enough coins', info: 'balance 15, price 30'});
    expectStatus(await buy(v2, 'bomb', 30), 400, {reason: 'Not enough coins', info: 'balance 0, price 30'});
    expectStatus(await buy(elsewhere, 'bomb', 30), 404, {reason: 'unknown sku'});  // its channel prices nothing
    expectStatus(await buy(v2, 'free', 0), 200, {});
    expectStatus(await buy(v1, 'bomb', 29), 400, {reason: 'price does not match', info: 'the price of bomb is 30'});
    expectStatus(await buy(v1, 'broken', 0), 400, {reason: 'price does not match', info: 'the sku has no price'});
    expectStatus(await buy(v1, 'nothing', 1), 404, {reason: 'unknown sku'});
    for (const body of [{sku: 'bomb'}, {price: 30}, {sku: 'bomb', price: 'x'}, {sku: 'bomb', price: -1}]) {
      expectStatus(await PR.req('POST', 'coins/purchase', v1, {body}), 400, undefined, JSON.stringify(body));
    }
    expectStatus(await PR.req('POST', 'coins/purchase', v1, {rawBody: '[1]'}), 400);
    expectStatus(await prod.request('POST', 'coins/purchase', {body: {sku: 'bomb', price: 30}}), 401);
    expectStatus(await buy(PR.as('anonymous', {channel: ch}), 'free', 0), 200, {});  // opaque id is its key
  });
});
