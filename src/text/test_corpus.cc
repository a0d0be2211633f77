// The built-in training text of the test tokenizers (test_tokenizers.h): short image descriptions in the
// style of text-to-image prompts, written for this project. Its only job is to give the BPE and unigram
// trainers common English words and subwords to learn.
#include <string_view>

#include "text/test_tokenizers.h"

namespace flux::text {

std::string_view test_corpus() {
  return R"(A photo of a red fox in the snow, golden hour, soft light.
A watercolor painting of a small harbor town at dawn, boats resting on calm water.
An astronaut riding a horse on the surface of the moon, cinematic lighting, high detail.
A cozy reading room with a green armchair, a wooden shelf full of old books and a sleeping cat.
A bowl of fresh fruit on a kitchen table: apples, oranges, grapes and two yellow bananas.
A portrait of an old fisherman with a white beard, wearing a blue knitted hat, film grain.
A futuristic city skyline at night, neon signs reflected in the wet streets after the rain.
A mountain lake surrounded by pine trees, mist rising from the water in the early morning.
A close-up photograph of a honeybee on a purple flower, shallow depth of field.
A child flying a kite on a windy beach, bright summer day, clouds drifting over the sea.
An illustration of a dragon sleeping on a pile of gold coins inside a dark cave.
A steaming cup of coffee next to a notebook and a pencil on a rainy afternoon.
A lighthouse standing on a rocky cliff while storm waves crash below, dramatic sky.
A field of sunflowers under a clear blue sky, a red barn far in the distance.
A black and white photo of a busy train station in the nineteen fifties.
A robot watering plants in a greenhouse, warm sunlight through the glass roof.
A snowy village street at Christmas with lanterns, wreaths and footprints in the snow.
A street market in the evening, stalls selling spices, lamps glowing orange and people talking.
A sailing ship on the open ocean during a sunset, the sails painted orange by the light.
A minimalist poster with the words "hello world" in bold letters on a white background.
A macro shot of morning dew drops on a spider web, sparkling in the sunlight.
Three puppies playing in the grass of a garden, one of them holding a red ball.
An oil painting of a quiet forest path in autumn, leaves of red, orange and yellow.
A plate of pasta with tomato sauce and basil, restaurant photography, 35mm lens, f/1.8.
A desert landscape with tall sand dunes and a single camel walking toward the horizon.
A cat wearing sunglasses sitting at the wheel of a vintage car, playful, colorful.
The northern lights over a frozen lake, green and purple ribbons of light in the sky.
A cutaway drawing of a clockwork machine with brass gears, springs and tiny screws.
A photograph of a city park in spring, cherry trees in bloom and people walking their dogs.
A small wooden cabin in the woods with smoke rising from the chimney, 4k, highly detailed.
)";
}

}  // namespace flux::text
