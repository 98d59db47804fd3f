# fmnist-vit and M3ViT (issue 21): a model train_fmnist does not have, and a task index the
# M3ViT models do not have, refused with one line before any data loads. m3vit_fmnist is
# built next to train_fmnist (examples/).
m3vit="$(dirname "$train_fmnist")/m3vit_fmnist"
bad_input_table <<'TABLE'
train_fmnist --model vitt         | ^error: --model: vitt not in {mlp,cnn,vit}$                   | 10 | "$train_fmnist" --threads 1 --model vitt
m3vit_fmnist --task 2             | ^error: --task 2: the model has 2 tasks, expected 0 to 1$       | 10 | "$m3vit" --threads 1 --arch single --task 2 --data-dir "$out/none"
m3vit_fmnist --task -1            | ^error: --task -1: the model has 2 tasks, expected 0 to 1$      | 10 | "$m3vit" --threads 1 --arch m3vit --task -1
m3vit_fmnist --arch moe           | ^error: --arch: moe not in {m3vit,dense,single}$              | 10 | "$m3vit" --threads 1 --arch moe
TABLE
