/**
 * HD keys against published vectors:
 * - BIP32 test vectors 1 to 5 (https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki,
 *   "Test Vectors"; copied from bitcoin/bips at commit 7fe0b034ec967b52a5a28276419117326df93263).
 * - SLIP-0010 Ed25519 test vectors 1 and 2
 *   (https://github.com/satoshilabs/slips/blob/master/slip-0010.md, "Test vectors"; satoshilabs/slips
 *   at commit ac9e0ca32fbde4ee6c14e5565ffaee5e7ad65103). The "public" there is 0x00 ‖ the point.
 * - BIP39 English vectors with passphrase "TREZOR" from Trezor's vectors file
 *   (https://github.com/trezor/python-mnemonic/blob/master/vectors.json; commit
 *   f5a975ab10c035596d65d854d21164266ffed284): entropy, mnemonic, seed, master xprv.
 * Children's private keys are read from the BIP32 xprvs with the independent `bip32` package.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BIP32Factory } from 'bip32';
import * as ecc from '@bitcoinerlab/secp256k1';
import { mnemonicToEntropy } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { CustosError } from '../../src/core/errors.js';
import { hexToBytes, bytesToHex } from '../../src/core/bytes.js';
import {
  DerivationCache,
  STORED_MASTER_LENGTH,
  decodeMaster,
  deriveChild,
  encodeMaster,
  exportXpub,
  generateMnemonic,
  importXprv,
  isValidMnemonic,
  masterFingerprint,
  masterFromSeed,
  publicKeyAt,
  seedFromMnemonic,
  type HdMaster,
} from '../../src/wallet/hd.js';

const bip32 = BIP32Factory(ecc);
const hex = bytesToHex;
const unhex = (s: string) => hexToBytes(s);

function refuses(code: string, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof CustosError && e.code === code, `expected ${code}`);
}

const BIP32_VECTORS: Array<{ name: string; seed: string; chains: Array<[string, string, string]> }> = [
  {
    name: 'vector 1',
    seed: '000102030405060708090a0b0c0d0e0f',
    chains: [
      ["m", 'xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8', 'xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi'],
      ["m/0'", 'xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw', 'xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7'],
      ["m/0'/1", 'xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ', 'xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs'],
      ["m/0'/1/2'", 'xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5', 'xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM'],
      ["m/0'/1/2'/2", 'xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV', 'xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334'],
      ["m/0'/1/2'/2/1000000000", 'xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy', 'xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76'],
    ],
  },
  {
    name: 'vector 2',
    seed: 'fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542',
    chains: [
      ["m", 'xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB', 'xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U'],
      ["m/0", 'xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH', 'xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt'],
      ["m/0/2147483647'", 'xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a', 'xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9'],
      ["m/0/2147483647'/1", 'xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon', 'xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef'],
      ["m/0/2147483647'/1/2147483646'", 'xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL', 'xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc'],
      ["m/0/2147483647'/1/2147483646'/2", 'xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt', 'xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j'],
    ],
  },
  {
    name: 'vector 3',
    seed: '4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4acba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be',
    chains: [
      ["m", 'xpub661MyMwAqRbcEZVB4dScxMAdx6d4nFc9nvyvH3v4gJL378CSRZiYmhRoP7mBy6gSPSCYk6SzXPTf3ND1cZAceL7SfJ1Z3GC8vBgp2epUt13', 'xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6'],
      ["m/0'", 'xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y', 'xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L'],
    ],
  },
  {
    name: 'vector 4',
    seed: '3ddd5602285899a946114506157c7997e5444528f3003f6134712147db19b678',
    chains: [
      ["m", 'xpub661MyMwAqRbcGczjuMoRm6dXaLDEhW1u34gKenbeYqAix21mdUKJyuyu5F1rzYGVxyL6tmgBUAEPrEz92mBXjByMRiJdba9wpnN37RLLAXa', 'xprv9s21ZrQH143K48vGoLGRPxgo2JNkJ3J3fqkirQC2zVdk5Dgd5w14S7fRDyHH4dWNHUgkvsvNDCkvAwcSHNAQwhwgNMgZhLtQC63zxwhQmRv'],
      ["m/0'", 'xpub69AUMk3qDBi3uW1sXgjCmVjJ2G6WQoYSnNHyzkmdCHEhSZ4tBok37xfFEqHd2AddP56Tqp4o56AePAgCjYdvpW2PU2jbUPFKsav5ut6Ch1m', 'xprv9vB7xEWwNp9kh1wQRfCCQMnZUEG21LpbR9NPCNN1dwhiZkjjeGRnaALmPXCX7SgjFTiCTT6bXes17boXtjq3xLpcDjzEuGLQBM5ohqkao9G'],
      ["m/0'/1'", 'xpub6BJA1jSqiukeaesWfxe6sNK9CCGaujFFSJLomWHprUL9DePQ4JDkM5d88n49sMGJxrhpjazuXYWdMf17C9T5XnxkopaeS7jGk1GyyVziaMt', 'xprv9xJocDuwtYCMNAo3Zw76WENQeAS6WGXQ55RCy7tDJ8oALr4FWkuVoHJeHVAcAqiZLE7Je3vZJHxspZdFHfnBEjHqU5hG1Jaj32dVoS6XLT1'],
    ],
  },
];

const BIP32_INVALID: Array<[string, string]> = [
  ['xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6LBpB85b3D2yc8sfvZU521AAwdZafEz7mnzBBsz4wKY5fTtTQBm', 'pubkey version / prvkey mismatch'],
  ['xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGTQQD3dC4H2D5GBj7vWvSQaaBv5cxi9gafk7NF3pnBju6dwKvH', 'prvkey version / pubkey mismatch'],
  ['xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Txnt3siSujt9RCVYsx4qHZGc62TG4McvMGcAUjeuwZdduYEvFn', 'invalid pubkey prefix 04'],
  ['xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGpWnsj83BHtEy5Zt8CcDr1UiRXuWCmTQLxEK9vbz5gPstX92JQ', 'invalid prvkey prefix 04'],
  ['xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6N8ZMMXctdiCjxTNq964yKkwrkBJJwpzZS4HS2fxvyYUA4q2Xe4', 'invalid pubkey prefix 01'],
  ['xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD9y5gkZ6Eq3Rjuahrv17fEQ3Qen6J', 'invalid prvkey prefix 01'],
  ['xprv9s2SPatNQ9Vc6GTbVMFPFo7jsaZySyzk7L8n2uqKXJen3KUmvQNTuLh3fhZMBoG3G4ZW1N2kZuHEPY53qmbZzCHshoQnNf4GvELZfqTUrcv', 'zero depth with non-zero parent fingerprint'],
  ['xpub661no6RGEX3uJkY4bNnPcw4URcQTrSibUZ4NqJEw5eBkv7ovTwgiT91XX27VbEXGENhYRCf7hyEbWrR3FewATdCEebj6znwMfQkhRYHRLpJ', 'zero depth with non-zero parent fingerprint'],
  ['xprv9s21ZrQH4r4TsiLvyLXqM9P7k1K3EYhA1kkD6xuquB5i39AU8KF42acDyL3qsDbU9NmZn6MsGSUYZEsuoePmjzsB3eFKSUEh3Gu1N3cqVUN', 'zero depth with non-zero index'],
  ['xpub661MyMwAuDcm6CRQ5N4qiHKrJ39Xe1R1NyfouMKTTWcguwVcfrZJaNvhpebzGerh7gucBvzEQWRugZDuDXjNDRmXzSZe4c7mnTK97pTvGS8', 'zero depth with non-zero index'],
  ['DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHGMQzT7ayAmfo4z3gY5KfbrZWZ6St24UVf2Qgo6oujFktLHdHY4', 'unknown extended key version'],
  ['DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHPmHJiEDXkTiJTVV9rHEBUem2mwVbbNfvT2MTcAqj3nesx8uBf9', 'unknown extended key version'],
  ['xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzF93Y5wvzdUayhgkkFoicQZcP3y52uPPxFnfoLZB21Teqt1VvEHx', 'private key 0 not in 1..n-1'],
  ['xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD5SDKr24z3aiUvKr9bJpdrcLg1y3G', 'private key n not in 1..n-1'],
  ['xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Q5JXayek4PRsn35jii4veMimro1xefsM58PgBMrvdYre8QyULY', 'invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007'],
  ['xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHL', 'invalid checksum'],
];
const SLIP10_ED25519: Array<{ seed: string; chains: Array<[string, string, string, string]> }> = [
  {
    seed: '000102030405060708090a0b0c0d0e0f',
    // [path, chain code, private, public (0x00 ‖ point)]
    chains: [
      ['m', '90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb', '2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7', '00a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed'],
      ["m/0'", '8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69', '68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3', '008c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c'],
      ["m/0'/1'", 'a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14', 'b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2', '001932a5270f335bed617d5b935c80aedb1a35bd9fc1e31acafd5372c30f5c1187'],
      ["m/0'/1'/2'", '2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c', '92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9', '00ae98736566d30ed0e9d2f4486a64bc95740d89c7db33f52121f8ea8f76ff0fc1'],
      ["m/0'/1'/2'/2'", '8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc', '30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662', '008abae2d66361c879b900d204ad2cc4984fa2aa344dd7ddc46007329ac76c429c'],
      ["m/0'/1'/2'/2'/1000000000'", '68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230', '8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793', '003c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a'],
    ],
  },
  {
    seed: 'fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542',
    chains: [
      ['m', 'ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b', '171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012', '008fe9693f8fa62a4305a140b9764c5ee01e455963744fe18204b4fb948249308a'],
      ["m/0'", '0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d', '1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635', '0086fab68dcb57aa196c77c5f264f215a112c22a912c10d123b0d03c3c28ef1037'],
      ["m/0'/2147483647'", '138f0b2551bcafeca6ff2aa88ba8ed0ed8de070841f0c4ef0165df8181eaad7f', 'ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4', '005ba3b9ac6e90e83effcd25ac4e58a1365a9e35a3d3ae5eb07b9e4d90bcf7506d'],
      ["m/0'/2147483647'/1'", '73bd9fff1cfbde33a1b846c27085f711c0fe2d66fd32e139d3ebc28e5a4a6b90', '3757c7577170179c7868353ada796c839135b3d30554bbb74a4b1e4a5a58505c', '002e66aa57069c86cc18249aecf5cb5a9cebbfd6fadeab056254763874a9352b45'],
      ["m/0'/2147483647'/1'/2147483646'", '0902fe8a29f9140480a00ef244bd183e8a13288e4412d8389d140aac1794825a', '5837736c89570de861ebc173b1086da4f505d4adb387c6a1b1342d5e4ac9ec72', '00e33c0f7d81d843c572275f287498e8d408654fdf0d1e065b84e2e6f157aab09b'],
      ["m/0'/2147483647'/1'/2147483646'/2'", '5d70af781f3a37b829f0d060924d5e960bdc02e85423494afc0b1a41bbe196d4', '551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d', '0047150c75db263559a70d5778bf36abbab30fb061ad69f69ece61a72b0cfa4fc0'],
    ],
  },
];
/** SLIP-0010 vector 1: fingerprint of the master, as given for chain m/0H. */
const SLIP10_ED25519_MASTER_FINGERPRINT = 0xddebc675;

/** [entropy, mnemonic, seed with passphrase "TREZOR", master xprv] */
const TREZOR_BIP39: Array<[string, string, string, string]> = [
  ['00000000000000000000000000000000', 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about', 'c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04', 'xprv9s21ZrQH143K3h3fDYiay8mocZ3afhfULfb5GX8kCBdno77K4HiA15Tg23wpbeF1pLfs1c5SPmYHrEpTuuRhxMwvKDwqdKiGJS9XFKzUsAF'],
  ['7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f', 'legal winner thank year wave sausage worth useful legal winner thank yellow', '2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607', 'xprv9s21ZrQH143K2gA81bYFHqU68xz1cX2APaSq5tt6MFSLeXnCKV1RVUJt9FWNTbrrryem4ZckN8k4Ls1H6nwdvDTvnV7zEXs2HgPezuVccsq'],
  ['ffffffffffffffffffffffffffffffff', 'zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong', 'ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069', 'xprv9s21ZrQH143K2V4oox4M8Zmhi2Fjx5XK4Lf7GKRvPSgydU3mjZuKGCTg7UPiBUD7ydVPvSLtg9hjp7MQTYsW67rZHAXeccqYqrsx8LcXnyd'],
  ['8080808080808080808080808080808080808080808080808080808080808080', 'letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless', 'c0c519bd0e91a2ed54357d9d1ebef6f5af218a153624cf4f2da911a0ed8f7a09e2ef61af0aca007096df430022f7a2b6fb91661a9589097069720d015e4e982f', 'xprv9s21ZrQH143K3CSnQNYC3MqAAqHwxeTLhDbhF43A4ss4ciWNmCY9zQGvAKUSqVUf2vPHBTSE1rB2pg4avopqSiLVzXEU8KziNnVPauTqLRo'],
  ['6610b25967cdcca9d59875f5cb50b0ea75433311869e930b', 'gravity machine north sort system female filter attitude volume fold club stay feature office ecology stable narrow fog', '628c3827a8823298ee685db84f55caa34b5cc195a778e52d45f59bcf75aba68e4d7590e101dc414bc1bbd5737666fbbef35d1f1903953b66624f910feef245ac', 'xprv9s21ZrQH143K3uT8eQowUjsxrmsA9YUuQQK1RLqFufzybxD6DH6gPY7NjJ5G3EPHjsWDrs9iivSbmvjc9DQJbJGatfa9pv4MZ3wjr8qWPAK'],
  ['f585c11aec520db57dd353c69554b21a89b20fb0650966fa0a9d6f74fd989d8f', 'void come effort suffer camp survey warrior heavy shoot primary clutch crush open amazing screen patrol group space point ten exist slush involve unfold', '01f5bced59dec48e362f2c45b5de68b9fd6c92c6634f44d6d40aab69056506f0e35524a518034ddc1192e1dacd32c1ed3eaa3c3b131c88ed8e7e54c49a5d0998', 'xprv9s21ZrQH143K39rnQJknpH1WEPFJrzmAqqasiDcVrNuk926oizzJDDQkdiTvNPr2FYDYzWgiMiC63YmfPAa2oPyNB23r2g7d1yiK6WpqaQS'],
];

function sameMaster(a: HdMaster, b: HdMaster): void {
  assert.equal(a.curve, b.curve);
  assert.equal(hex(a.chainCode), hex(b.chainCode));
  assert.equal(hex(a.privateKey), hex(b.privateKey));
}

test('BIP32 vectors 1-4: master from seed, xprv import, child private keys and xpub export at every chain', () => {
  for (const v of BIP32_VECTORS) {
    const master = masterFromSeed(unhex(v.seed), 'secp256k1');
    for (const [path, xpub, xprv] of v.chains) {
      const expected = bip32.fromBase58(xprv);
      const child = deriveChild(master, path);
      assert.equal(hex(child.privateKey), hex(expected.privateKey!), `${v.name} ${path} private key`);
      assert.equal(hex(child.publicKey), hex(expected.publicKey), `${v.name} ${path} public key`);
      assert.equal(exportXpub(master, path), xpub, `${v.name} ${path} xpub`);
      if (path === 'm') {
        const imported = importXprv(xprv);
        assert.equal(imported.network, 'mainnet');
        sameMaster(imported.master, master);
      }
    }
  }
});

test('BIP32 vector 1: the master fingerprint is the parent fingerprint of m/0H (3442193e)', () => {
  const master = masterFromSeed(unhex(BIP32_VECTORS[0]!.seed), 'secp256k1');
  assert.equal(masterFingerprint(master), 0x3442193e);
});

test('BIP32 vector 5: every invalid extended key is refused on import with invalid_key_material', () => {
  for (const [key, why] of BIP32_INVALID) {
    assert.throws(() => importXprv(key), (e: unknown) => e instanceof CustosError && e.code === 'invalid_key_material', why);
  }
});

test('imports a testnet tprv and exports tpubs; refuses a child xprv and an xpub', () => {
  const master = masterFromSeed(unhex(BIP32_VECTORS[0]!.seed), 'secp256k1');
  const tprv = bip32.fromPrivateKey(Buffer.from(master.privateKey), Buffer.from(master.chainCode), {
    wif: 0xef, bip32: { public: 0x043587cf, private: 0x04358394 }, messagePrefix: '', bech32: 'tb', pubKeyHash: 0x6f, scriptHash: 0xc4,
  });
  const imported = importXprv(tprv.toBase58());
  assert.equal(imported.network, 'testnet');
  sameMaster(imported.master, master);
  assert.equal(exportXpub(master, "m/84'/1'/0'", 'testnet'), tprv.derivePath("m/84'/1'/0'").neutered().toBase58());
  refuses('invalid_key_material', () => importXprv(BIP32_VECTORS[0]!.chains[1]![2]));
  refuses('invalid_key_material', () => importXprv(BIP32_VECTORS[0]!.chains[0]![1]));
  refuses('invalid_key_material', () => importXprv('not base58 at all 0OIl'));
});

test('SLIP-10 Ed25519 vectors 1 and 2: private and public keys at every chain; the master chain code', () => {
  for (const v of SLIP10_ED25519) {
    const master = masterFromSeed(unhex(v.seed), 'ed25519');
    assert.equal(hex(master.chainCode), v.chains[0]![1]);
    for (const [path, , priv, pub] of v.chains) {
      const k = deriveChild(master, path);
      assert.equal(hex(k.privateKey), priv, path);
      assert.equal('00' + hex(k.publicKey), pub, path);
    }
  }
  assert.equal(masterFingerprint(masterFromSeed(unhex(SLIP10_ED25519[0]!.seed), 'ed25519')), SLIP10_ED25519_MASTER_FINGERPRINT);
});

test('SLIP-10 Ed25519 refuses non-hardened levels and has no xpub', () => {
  const master = masterFromSeed(unhex(SLIP10_ED25519[0]!.seed), 'ed25519');
  refuses('invalid_derivation_path', () => deriveChild(master, "m/0'/1"));
  refuses('unsupported_algorithm', () => exportXpub(master, "m/0'"));
});

test('BIP39 Trezor vectors: mnemonic to seed with passphrase TREZOR, and to the master xprv', () => {
  for (const [entropy, mnemonic, seed, xprv] of TREZOR_BIP39) {
    assert.equal(isValidMnemonic(mnemonic), true);
    assert.equal(hex(mnemonicToEntropy(mnemonic, wordlist)), entropy);
    const s = seedFromMnemonic(mnemonic, 'TREZOR');
    assert.equal(hex(s), seed);
    sameMaster(masterFromSeed(s, 'secp256k1'), importXprv(xprv).master);
  }
});

test('refuses a mnemonic with a bad checksum, an unknown word or a wrong word count', () => {
  refuses('invalid_key_material', () => seedFromMnemonic('abandon '.repeat(12).trim()));
  refuses('invalid_key_material', () => seedFromMnemonic('abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abcdef'));
  refuses('invalid_key_material', () => seedFromMnemonic('abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about'));
  refuses('invalid_key_material', () => seedFromMnemonic(''));
});

test('generated mnemonics are valid and have the word count of their strength', () => {
  for (const [strength, words] of [[128, 12], [160, 15], [192, 18], [224, 21], [256, 24]] as const) {
    const m = generateMnemonic(strength);
    assert.equal(m.split(' ').length, words);
    assert.equal(isValidMnemonic(m), true);
  }
  refuses('bad_request', () => generateMnemonic(100 as 128));
});

test('seeds outside 16..64 bytes are refused', () => {
  refuses('invalid_key_material', () => masterFromSeed(new Uint8Array(15), 'secp256k1'));
  refuses('invalid_key_material', () => masterFromSeed(new Uint8Array(65), 'ed25519'));
});

test('stored form: round trip for both curves; every truncation, extension and bad header refused', () => {
  for (const curve of ['secp256k1', 'ed25519'] as const) {
    const master = masterFromSeed(unhex(BIP32_VECTORS[1]!.seed), curve);
    const stored = encodeMaster(master);
    assert.equal(stored.length, STORED_MASTER_LENGTH);
    sameMaster(decodeMaster(stored), master);
    for (let i = 0; i < stored.length; i++) refuses('invalid_key_material', () => decodeMaster(stored.subarray(0, i)));
    refuses('invalid_key_material', () => decodeMaster(Uint8Array.of(...stored, 0)));
    for (const [at, value] of [[0, 0], [0, 2], [1, 0], [1, 3]] as const) {
      const bad = Uint8Array.from(stored);
      bad[at] = value;
      refuses('invalid_key_material', () => decodeMaster(bad));
    }
  }
  const stored = encodeMaster(masterFromSeed(unhex(BIP32_VECTORS[0]!.seed), 'secp256k1'));
  const zero = Uint8Array.from(stored);
  zero.fill(0, 34);
  refuses('invalid_key_material', () => decodeMaster(zero));
  const n = Uint8Array.from(stored);
  n.set(unhex('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141'), 34);
  refuses('invalid_key_material', () => decodeMaster(n));
});

test('random stored forms either decode or give invalid_key_material (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      try {
        decodeMaster(bytes);
      } catch (e) {
        assert.ok(e instanceof CustosError && e.code === 'invalid_key_material');
      }
    }),
  );
});

test('a warm cache derives only the last level at depth 5, and gives the same keys as no cache', () => {
  const master = masterFromSeed(unhex(BIP32_VECTORS[0]!.seed), 'secp256k1');
  const cache = new DerivationCache({ maxNodes: 64 });
  const at = { id: 'key-1', cache };
  const first = deriveChild(master, "m/84'/0'/0'/0/0", at);
  assert.equal(cache.stats.levelsDerived, 5);
  assert.equal(cache.stats.size, 5); // m, m/84', m/84'/0', m/84'/0'/0', m/84'/0'/0'/0
  const before = cache.stats.levelsDerived;
  for (let i = 1; i <= 20; i++) {
    const k = deriveChild(master, `m/84'/0'/0'/0/${i}`, at);
    assert.equal(hex(k.privateKey), hex(deriveChild(master, `m/84'/0'/0'/0/${i}`).privateKey));
  }
  assert.equal(cache.stats.levelsDerived - before, 20);
  const change = deriveChild(master, "m/84'/0'/0'/1/3", at);
  assert.equal(hex(change.publicKey), hex(publicKeyAt(master, "m/84'/0'/0'/1/3")));
  assert.equal(hex(first.publicKey), hex(publicKeyAt(master, "m/84'/0'/0'/0/0")));
  cache.clear();
  assert.equal(cache.stats.size, 0);
});

test('the cache stays within its bound, and a tiny or disabled cache still derives correctly (property)', () => {
  const master = masterFromSeed(unhex(BIP32_VECTORS[1]!.seed), 'secp256k1');
  const ed = masterFromSeed(unhex(BIP32_VECTORS[1]!.seed), 'ed25519');
  for (const maxNodes of [0, 1, 3]) {
    const cache = new DerivationCache({ maxNodes });
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 0, maxLength: 5 }), fc.boolean(), (levels, useEd) => {
        const m = useEd ? ed : master;
        const path = levels.map((i) => (useEd ? i + 0x8000_0000 : i));
        const id = useEd ? 'ed' : 'secp';
        const k = deriveChild(m, path, { id, cache });
        assert.equal(hex(k.privateKey), hex(deriveChild(m, path).privateKey));
        assert.ok(cache.stats.size <= maxNodes);
      }),
      { numRuns: 60 },
    );
  }
});

test('a different master under a known cache id is detected, not served from the other tree', () => {
  const a = masterFromSeed(unhex(BIP32_VECTORS[0]!.seed), 'secp256k1');
  const b = masterFromSeed(unhex(BIP32_VECTORS[1]!.seed), 'secp256k1');
  const cache = new DerivationCache();
  deriveChild(a, "m/84'/0'/0'/0/0", { id: 'same', cache });
  const fromB = deriveChild(b, "m/84'/0'/0'/0/0", { id: 'same', cache });
  assert.equal(hex(fromB.privateKey), hex(deriveChild(b, "m/84'/0'/0'/0/0").privateKey));
});

test('forget and clear wipe the cached nodes\' private keys', () => {
  const master = masterFromSeed(unhex(BIP32_VECTORS[0]!.seed), 'ed25519');
  const cache = new DerivationCache();
  deriveChild(master, "m/1'/2'/3'", { id: 'x', cache });
  // Reach into the cache only to observe the wipe: the nodes' key buffers are zero afterwards.
  const entries = [...(cache as unknown as { entries: Map<string, { node: { key: Uint8Array } }> }).entries.values()];
  assert.ok(entries.length > 0 && entries.every((e) => e.node.key.some((x) => x !== 0)));
  cache.forget('x');
  assert.ok(entries.every((e) => e.node.key.every((x) => x === 0)));
  assert.equal(cache.stats.size, 0);
});
