#include "sealed.hpp"

#include <mbedtls/gcm.h>

#include <cstring>

namespace clsgw::tls {

namespace {

void on_keys(void *arg, mbedtls_ssl_key_export_type type, const unsigned char *secret, size_t secret_len,
            const unsigned char client_random[32], const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
    auto *keys = static_cast<exported_keys *>(arg);
    if (type != MBEDTLS_SSL_KEY_EXPORT_TLS12_MASTER_SECRET || secret_len != sizeof keys->master)
        return;
    memcpy(keys->master, secret, secret_len);
    memcpy(keys->client_random, client_random, 32);
    memcpy(keys->server_random, server_random, 32);
    keys->prf = prf;
    keys->have = true;
}

void put_u64(unsigned char *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = static_cast<unsigned char>(v);
}

// additional_data = seq_num + TLSCompressed.type + TLSCompressed.version + TLSCompressed.length
void additional_data(unsigned char out[13], uint64_t seq, uint8_t type, size_t len)
{
    put_u64(out, seq);
    out[8] = type;
    out[9] = 3;
    out[10] = 3;
    out[11] = static_cast<unsigned char>(len >> 8);
    out[12] = static_cast<unsigned char>(len);
}

constexpr size_t EXPLICIT_NONCE = 8, TAG = 16;

} // namespace

void export_keys(mbedtls_ssl_context *ssl, exported_keys *keys)
{
    mbedtls_ssl_set_export_keys_cb(ssl, on_keys, keys);
}

bool sealed_session::derive(const exported_keys &keys, uint16_t suite)
{
    if (!keys.have || (suite != 0xC02B && suite != 0xC02C))
        return false;
    key_len_ = suite == 0xC02B ? 16 : 32;
    unsigned char seed[64], block[2 * 32 + 2 * 4];
    memcpy(seed, keys.server_random, 32); // key expansion: server_random + client_random
    memcpy(seed + 32, keys.client_random, 32);
    size_t need = 2 * key_len_ + 2 * 4;
    if (mbedtls_ssl_tls_prf(keys.prf, keys.master, sizeof keys.master, "key expansion", seed, sizeof seed, block,
                            need) != 0)
        return false;
    memcpy(client_key_, block, key_len_);
    memcpy(server_key_, block + key_len_, key_len_);
    memcpy(client_iv_, block + 2 * key_len_, 4);
    memcpy(server_iv_, block + 2 * key_len_ + 4, 4);
    ready_ = true;
    return true;
}

std::vector<uint8_t> sealed_session::seal(bool from_client, uint8_t type, const std::vector<uint8_t> &plaintext)
{
    if (!ready_)
        return {};
    uint64_t seq = seq_[from_client ? 0 : 1]++;
    unsigned char nonce[12], aad[13], tag[TAG];
    memcpy(nonce, from_client ? client_iv_ : server_iv_, 4);
    put_u64(nonce + 4, seq);
    additional_data(aad, seq, type, plaintext.size());
    std::vector<uint8_t> record(5 + EXPLICIT_NONCE + plaintext.size() + TAG);
    size_t body = record.size() - 5;
    record[0] = type;
    record[1] = 3;
    record[2] = 3;
    record[3] = static_cast<uint8_t>(body >> 8);
    record[4] = static_cast<uint8_t>(body);
    memcpy(&record[5], nonce + 4, EXPLICIT_NONCE);
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, from_client ? client_key_ : server_key_,
                                 static_cast<unsigned>(key_len_ * 8));
    if (ret == 0)
        ret = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, plaintext.size(), nonce, sizeof nonce, aad,
                                        sizeof aad, plaintext.data(), &record[5 + EXPLICIT_NONCE], TAG, tag);
    mbedtls_gcm_free(&gcm);
    if (ret != 0)
        return {};
    memcpy(&record[record.size() - TAG], tag, TAG);
    return record;
}

std::optional<std::vector<uint8_t>> sealed_session::open(bool from_client, uint8_t type, const std::vector<uint8_t> &body)
{
    if (!ready_ || body.size() < EXPLICIT_NONCE + TAG)
        return std::nullopt;
    size_t len = body.size() - EXPLICIT_NONCE - TAG;
    unsigned char nonce[12], aad[13];
    uint64_t &seq = seq_[from_client ? 0 : 1];
    memcpy(nonce, from_client ? client_iv_ : server_iv_, 4);
    memcpy(nonce + 4, body.data(), EXPLICIT_NONCE);
    additional_data(aad, seq, type, len);
    std::vector<uint8_t> plain(len);
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, from_client ? client_key_ : server_key_,
                                 static_cast<unsigned>(key_len_ * 8));
    if (ret == 0)
        ret = mbedtls_gcm_auth_decrypt(&gcm, len, nonce, sizeof nonce, aad, sizeof aad, body.data() + len + EXPLICIT_NONCE,
                                       TAG, body.data() + EXPLICIT_NONCE, plain.data());
    mbedtls_gcm_free(&gcm);
    if (ret != 0)
        return std::nullopt;
    seq++;
    return plain;
}

} // namespace clsgw::tls
