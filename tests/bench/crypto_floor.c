/* The crypto floor for make bench: what the same mbedTLS can do on one core, with no relay,
 * no sockets and no processes around it.
 *
 *   crypto_floor gcm SECONDS          AES-128-GCM and AES-256-GCM encryption of 16 KiB records
 *   crypto_floor ecc ROUNDS           the ECC operations of one HAN handshake, per curve
 *
 * mbedTLS keeps a table of multiples of the curve's generator in the group once a key has used it
 * (MBEDTLS_ECP_FIXED_POINT_OPTIM). A worker is a fresh process per channel, so its verification
 * always builds that table first: "verify_cold_ms" times that, with a fresh group each round.
 * The signer keeps its key loaded: its signature is "sign_ms", with the table in place.
 *
 * Prints one JSON object on stdout. */
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static mbedtls_ctr_drbg_context drbg;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "crypto_floor: %s failed: -0x%04x\n", what, (unsigned)-rc);
        exit(1);
    }
}

/* MiB/s of GCM encryption with a fresh IV per 16 KiB record, as TLS 1.2 does it. */
static double gcm_speed(unsigned key_bits, double seconds)
{
    static unsigned char in[16384], out[16384];
    unsigned char key[32] = {0}, iv[12] = {0}, aad[13] = {0}, tag[16];
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    check(mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, key_bits), "gcm_setkey");
    memset(in, 0x5a, sizeof in);
    unsigned long records = 0;
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        for (int i = 0; i < 64; i++, records++) {
            memcpy(iv + 4, &records, sizeof records < 8 ? sizeof records : 8);
            check(mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, sizeof in, iv, sizeof iv, aad, sizeof aad,
                                            in, out, sizeof tag, tag), "gcm_crypt_and_tag");
        }
        t = now();
    }
    mbedtls_gcm_free(&gcm);
    return (double)records * sizeof in / (1024.0 * 1024.0) / (t - start);
}

/* Milliseconds per operation: ECDHE (key generation + shared secret), ECDSA sign, ECDSA verify
 * (with the generator table cached, and cold as in a fresh process). */
static void ecc_costs(mbedtls_ecp_group_id id, int rounds, double *ecdhe, double *sign, double *verify,
                      double *verify_cold)
{
    mbedtls_ecdsa_context key;
    mbedtls_ecdsa_init(&key);
    check(mbedtls_ecdsa_genkey(&key, id, mbedtls_ctr_drbg_random, &drbg), "ecdsa_genkey");
    unsigned char hash[32], sig[MBEDTLS_ECDSA_MAX_LEN];
    size_t sig_len = 0;
    memset(hash, 0x11, sizeof hash);

    double t = now();
    for (int i = 0; i < rounds; i++)
        check(mbedtls_ecdsa_write_signature(&key, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, sizeof sig, &sig_len,
                                            mbedtls_ctr_drbg_random, &drbg), "ecdsa_write_signature");
    *sign = (now() - t) * 1000.0 / rounds;

    t = now();
    for (int i = 0; i < rounds; i++)
        check(mbedtls_ecdsa_read_signature(&key, hash, sizeof hash, sig, sig_len), "ecdsa_read_signature");
    *verify = (now() - t) * 1000.0 / rounds;

    /* the public point, taken out once: each round's key gets it with a freshly loaded group */
    mbedtls_ecp_group key_grp;
    mbedtls_mpi key_d;
    mbedtls_ecp_point key_q;
    mbedtls_ecp_group_init(&key_grp);
    mbedtls_mpi_init(&key_d);
    mbedtls_ecp_point_init(&key_q);
    check(mbedtls_ecp_export(&key, &key_grp, &key_d, &key_q), "ecp_export");
    double cold = 0;
    for (int i = 0; i < rounds; i++) {
        mbedtls_ecdsa_context fresh;
        mbedtls_ecdsa_init(&fresh);
        check(mbedtls_ecp_set_public_key(id, &fresh, &key_q), "ecp_set_public_key");
        double t0 = now();
        check(mbedtls_ecdsa_read_signature(&fresh, hash, sizeof hash, sig, sig_len), "ecdsa_read_signature (cold)");
        cold += now() - t0;
        mbedtls_ecdsa_free(&fresh);
    }
    *verify_cold = cold * 1000.0 / rounds;
    mbedtls_ecp_group_free(&key_grp);
    mbedtls_mpi_free(&key_d);
    mbedtls_ecp_point_free(&key_q);
    mbedtls_ecdsa_free(&key);

    double spent = 0;
    for (int i = 0; i < rounds; i++) {
        mbedtls_ecp_group grp;
        mbedtls_mpi d, z, pd;
        mbedtls_ecp_point q, qp;
        mbedtls_ecp_group_init(&grp);
        mbedtls_mpi_init(&d), mbedtls_mpi_init(&z), mbedtls_mpi_init(&pd);
        mbedtls_ecp_point_init(&q), mbedtls_ecp_point_init(&qp);
        check(mbedtls_ecp_group_load(&grp, id), "ecp_group_load");
        /* the peer's public value is made outside the timed part below, as it arrives on the wire */
        check(mbedtls_ecdh_gen_public(&grp, &pd, &qp, mbedtls_ctr_drbg_random, &drbg), "peer gen_public");
        double t0 = now();
        check(mbedtls_ecdh_gen_public(&grp, &d, &q, mbedtls_ctr_drbg_random, &drbg), "ecdh_gen_public");
        check(mbedtls_ecdh_compute_shared(&grp, &z, &qp, &d, mbedtls_ctr_drbg_random, &drbg), "compute_shared");
        spent += now() - t0;
        mbedtls_ecp_group_free(&grp);
        mbedtls_mpi_free(&d), mbedtls_mpi_free(&z), mbedtls_mpi_free(&pd);
        mbedtls_ecp_point_free(&q), mbedtls_ecp_point_free(&qp);
    }
    *ecdhe = spent * 1000.0 / rounds;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "gcm") && strcmp(argv[1], "ecc"))) {
        fprintf(stderr, "usage: crypto_floor gcm SECONDS | crypto_floor ecc ROUNDS\n");
        return 2;
    }
    mbedtls_entropy_context entropy;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    check(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)"floor", 5), "seed");

    if (!strcmp(argv[1], "gcm")) {
        double s = atof(argv[2]);
        double a128 = gcm_speed(128, s), a256 = gcm_speed(256, s);
        printf("{\"aes128gcm_mib_s\": %.1f, \"aes256gcm_mib_s\": %.1f}\n", a128, a256);
        return 0;
    }
    int rounds = atoi(argv[2]);
    if (rounds < 1)
        rounds = 1;
    static const struct { mbedtls_ecp_group_id id; const char *name; } curves[] = {
        {MBEDTLS_ECP_DP_BP256R1, "brainpoolP256r1"}, {MBEDTLS_ECP_DP_BP384R1, "brainpoolP384r1"},
        {MBEDTLS_ECP_DP_SECP256R1, "secp256r1"}, {MBEDTLS_ECP_DP_SECP384R1, "secp384r1"},
    };
    printf("{");
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++) {
        double ecdhe, sign, verify, verify_cold;
        ecc_costs(curves[i].id, rounds, &ecdhe, &sign, &verify, &verify_cold);
        printf("%s\"%s\": {\"ecdhe_ms\": %.3f, \"sign_ms\": %.3f, \"verify_ms\": %.3f, \"verify_cold_ms\": %.3f}",
               i ? ", " : "", curves[i].name, ecdhe, sign, verify, verify_cold);
    }
    printf("}\n");
    return 0;
}
