/* Open a bundle and print its kind, metadata and tensors.
 *
 *   cc bundle_info.c $(pkg-config --cflags --libs dalle) -o bundle_info
 *   ./bundle_info model.dalle
 */
#include <dalle/dalle.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
        return 2;
    }
    dalle_bundle *b;
    if (dalle_bundle_open(argv[1], &b) != DALLE_OK) {
        fprintf(stderr, "%s\n", dalle_last_error());
        return 1;
    }
    printf("libdalle %s\nkind: %s\n", dalle_version(), dalle_bundle_kind(b));
    for (int i = 0; i < dalle_bundle_n_tensors(b); i++) {
        dalle_tensor_info t;
        dalle_bundle_tensor_info(b, i, &t);
        printf("%-60s [", t.name);
        for (int d = 0; d < t.ndim; d++)
            printf(d ? ", %lld" : "%lld", (long long)t.dims[d]);
        printf("]\n");
    }
    dalle_bundle_close(b);
    return 0;
}
